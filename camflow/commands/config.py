"""``camflow config``: check a deployment's YAML, and the JSON Schema editors validate it with."""
from __future__ import annotations

import json
import sys

import yaml

from camflow.config import Config, load_config


def cmd_config_check(args) -> int:
    """Validates the file (errors name the field, exit 2) and prints the normalised config:
    every setting with its effective value, defaults filled in."""
    config = load_config(args.config)
    print(f"camflow config check: {args.config} is valid ({len(config.cameras)} cameras)",
          file=sys.stderr)
    normalised = config.model_dump(mode="json", exclude_none=not args.with_none)
    if args.json:
        print(json.dumps(normalised, indent=2, sort_keys=False))
    else:
        print(yaml.safe_dump(normalised, sort_keys=False, allow_unicode=True), end="")
    return 0


def cmd_config_schema(args) -> int:
    """JSON Schema of the whole config (every field's bounds and description), e.g. for the
    YAML language server: ``# yaml-language-server: $schema=camflow.schema.json``."""
    schema = json.dumps(Config.model_json_schema(), indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(schema + "\n")
        print(f"camflow config schema: wrote {args.out}", file=sys.stderr)
    else:
        print(schema)
    return 0


def register(sub) -> None:
    actions = sub.add_parser("config", help="check a deployment YAML; export its JSON Schema") \
        .add_subparsers(dest="action", required=True)
    p = actions.add_parser("check", help="validate and print the normalised config")
    p.add_argument("--config", required=True)
    p.add_argument("--json", action="store_true", help="JSON instead of YAML")
    p.add_argument("--with-none", action="store_true", help="also list settings left unset")
    p.set_defaults(func=cmd_config_check)
    p = actions.add_parser("schema", help="the JSON Schema of the config, for editors")
    p.add_argument("--out", help="write it here (default: stdout)")
    p.set_defaults(func=cmd_config_schema)
