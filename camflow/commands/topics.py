"""``camflow topics``: create or update every topic as the deployment's config sets it."""
from __future__ import annotations

import json
import sys

from camflow.commands.common import _config


def cmd_topics_apply(args) -> int:
    """Creates the missing topics and brings the others to the configured partitions and topic
    configs (camflow/services/topics.py); ``--dry-run`` only says what it would change. Exit 1
    when Kafka does not answer or refused a change (2: a usage or config error)."""
    from confluent_kafka import KafkaException

    from camflow.services.topics import apply, format_changes
    config = _config(args)
    try:
        changes = apply(config, dry_run=args.dry_run)
    except KafkaException as exc:
        print(f"camflow topics apply: Kafka {config.kafka.bootstrap_servers}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"bootstrap_servers": config.kafka.bootstrap_servers, "dry_run": args.dry_run,
                          "topics": [c.as_dict() for c in changes]}))
    else:
        print("\n".join(format_changes(changes, args.dry_run)))
    return 1 if any(c.error for c in changes) else 0


def register(sub) -> None:
    actions = sub.add_parser("topics", help="create or update the deployment's Kafka topics") \
        .add_subparsers(dest="action", required=True)
    p = actions.add_parser("apply", help="every topic with the partitions, retention, cleanup policy "
                           "and min.insync.replicas the config sets (idempotent)")
    p.add_argument("--config")
    p.add_argument("--dry-run", action="store_true", help="only print what would change")
    p.add_argument("--json", action="store_true", help="the changes as one JSON object")
    p.set_defaults(func=cmd_topics_apply)
