"""``camflow notify``: deliver alerts to MQTT brokers and webhooks by the config's routes."""
from __future__ import annotations


def cmd_notify(args) -> int:
    from camflow.commands.common import find_config
    from camflow.services.notify import run
    args.config = str(find_config(args.config)[0] or "") or None  # the same discovery as every command
    return run(args)


def register(sub) -> None:
    from camflow.services.notify import add_arguments
    p = sub.add_parser("notify", help="deliver alerts to MQTT and webhooks by the notify: routes")
    add_arguments(p)
    p.set_defaults(func=cmd_notify)
