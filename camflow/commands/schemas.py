"""``camflow schemas``: the Avro contracts in the schema registry, at deploy time."""
from __future__ import annotations

import json
import sys

from camflow.commands.common import _config
from camflow.config import ConfigError


def cmd_schemas(args) -> int:
    """``register``: FULL_TRANSITIVE on every subject, the registry's compatibility test, then
    the current contracts registered; ``check``: the same questions, nothing changed
    (camflow/services/schemas.py). Exit 1 when a subject fails, 2 without a registry URL."""
    from camflow.services.schemas import RegistryNotConfigured, format_results, run
    config = _config(args)
    try:
        results = run(config, write=args.action == "register")
    except RegistryNotConfigured as exc:
        raise ConfigError(f"camflow schemas {args.action}: {exc}") from None
    if args.json:
        print(json.dumps({"registry": config.kafka.schema_registry_url, "action": args.action,
                          "subjects": [r.as_dict() for r in results]}))
    else:
        print("\n".join(format_results(results)))
    failed = [r.subject for r in results if not r.ok]
    if failed:
        print(f"camflow schemas {args.action}: {len(failed)} subject(s) failed: {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0


def register(sub) -> None:
    actions = sub.add_parser("schemas", help="register or check the Avro contracts in the schema "
                             "registry (FULL_TRANSITIVE)").add_subparsers(dest="action", required=True)
    for action, text in (("register", "set FULL_TRANSITIVE, test and register every contract"),
                         ("check", "is every contract registered and compatible? (changes nothing)")):
        p = actions.add_parser(action, help=text)
        p.add_argument("--config")
        p.add_argument("--json", action="store_true", help="the result as one JSON object")
        p.set_defaults(func=cmd_schemas)
