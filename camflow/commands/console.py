"""``camflow console``: the operators' web console."""
from __future__ import annotations

import sys

from camflow.commands.common import _config


def cmd_console(args) -> int:
    if args.action == "hash-password":
        import getpass

        from camflow.services.console.auth import hash_password
        password = (sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty()
                    else getpass.getpass("password: "))
        if len(password) < 8:
            print("camflow console: a password needs at least 8 characters", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    from camflow.services.console.app import serve
    return serve(_config(args), store_url=args.store, host=args.host, port=args.port)


def register(sub) -> None:
    p = sub.add_parser("console", help="the operators' web console (live alerts, cameras, subjects)")
    p.add_argument("action", nargs="?", default="serve", choices=["serve", "hash-password"],
                   help="serve (default), or hash-password: a password read from stdin "
                   "as a hash for console.users")
    p.add_argument("--host", help="bind address (default: console.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="default: console.port")
    p.add_argument("--store")
    p.add_argument("--config")
    p.set_defaults(func=cmd_console)
