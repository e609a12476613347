"""``camflow sink``: topics into the analyst store."""
from __future__ import annotations

import json

from camflow.commands.common import _config, serve_metrics


def cmd_sink(args) -> int:
    from camflow.services.sink import run_sink
    config = _config(args)
    serve_metrics(args.metrics_port)
    report = run_sink(config, store_url=args.store, idle_exit_s=args.idle_exit)
    print(json.dumps({"written": report.written, "rejected": report.rejected,
                      "expired_embeddings": report.expired_embeddings, "expired": report.expired,
                      "seconds": round(report.seconds, 2)}))
    return 0


def register(sub) -> None:
    p = sub.add_parser("sink", help="write alerts, aggregates and analyses to the analyst store")
    p.add_argument("--config")
    p.add_argument("--store", help="duckdb:///PATH or postgresql://... (default: config store.url)")
    p.add_argument("--idle-exit", type=float, help="stop after this many seconds without records")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.set_defaults(func=cmd_sink)
