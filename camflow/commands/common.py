"""What every command shares: reading the config, Prometheus metrics, progress bars."""
from __future__ import annotations

import sys

from camflow.config import load_config


def _config(args):
    return load_config(getattr(args, "config", None))


def serve_metrics(port: int | None) -> None:
    """``--metrics-port``: Prometheus ``/metrics`` of this process (camflow.services.metrics)."""
    if port is not None:
        from camflow.services.metrics import serve
        serve(port)
        print(f"camflow: metrics on http://0.0.0.0:{port}/metrics", file=sys.stderr)


def progress_wanted(args) -> bool | None:
    """Progress bars on stderr: off with ``--quiet``; else only when stderr is a terminal
    (None lets tqdm decide that)."""
    return False if getattr(args, "quiet", False) else None
