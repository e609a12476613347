"""``camflow models``: build and list models."""
from __future__ import annotations

from camflow.commands.common import progress_wanted


def cmd_models(args) -> int:
    from camflow.models import build as model_build
    from camflow.models import registry
    if args.action == "build":
        model_build.build(names=args.names or None, force=args.force,
                          progress=progress_wanted(args))
    for row in registry.list_models():
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="build or list the default models")
    p.add_argument("action", choices=["build", "list"])
    p.add_argument("names", nargs="*")
    p.add_argument("--force", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_models)
