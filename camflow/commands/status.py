"""``camflow status``: topic lags and job health."""
from __future__ import annotations

import json
import sys

from camflow.commands.common import _config


def cmd_status(args) -> int:
    """Topic lags per consumer group and the Flink job's health (camflow/services/status.py)."""
    from confluent_kafka import KafkaException

    from camflow.services.status import format_status, status
    config = _config(args)
    try:
        report = status(config, exact=args.exact, flink_url=args.flink_url)
    except KafkaException as exc:
        print(f"camflow status: Kafka {config.kafka.bootstrap_servers}: {exc}", file=sys.stderr)
        return 1  # a runtime failure (exit 2 is for usage and config errors)
    print(json.dumps(report) if args.json else "\n".join(format_status(report)))
    return 0


def register(sub) -> None:
    p = sub.add_parser("status", help="topic lags per consumer group and the Flink job's health")
    p.add_argument("--config")
    p.add_argument("--exact", action="store_true",
                   help="find end offsets by reading the partitions (the dev broker reports "
                        "wrong ones after batched writes)")
    p.add_argument("--flink-url", help="Flink REST API (default: job.rest_url)")
    p.add_argument("--json", action="store_true", help="everything as one JSON object")
    p.set_defaults(func=cmd_status)
