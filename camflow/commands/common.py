"""What every command shares: finding and reading the config, exit codes, Prometheus metrics,
progress bars."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from camflow.config import Config, load_config

# Where a command finds the deployment's config without --config, in this order.
CONFIG_ENV = "CAMFLOW_CONFIG"
LOCAL_CONFIG = "camflow.yaml"
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "infra" / "config" / "demo.yaml"


class UsageError(SystemExit):
    """A usage or config error: the message on stderr, exit status 2. (``camflow.commands.main``
    also gives status 2 to any command that stops with ``SystemExit("message")``.)"""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = 2


class Failure(SystemExit):
    """A runtime failure (a cluster that does not answer, a job that is not there): the message
    on stderr, exit status 1."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = 1


def find_config(given: str | None) -> tuple[Path | None, str]:
    """The config file and how it was found: ``--config``, then ``$CAMFLOW_CONFIG``, then
    ``./camflow.yaml``, then the demo's (``infra/config/demo.yaml``, what ``make demo`` runs);
    ``(None, ...)``: the built-in defaults."""
    if given:
        return Path(given), "--config"
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]), f"${CONFIG_ENV}"
    if Path(LOCAL_CONFIG).is_file():
        return Path(LOCAL_CONFIG), f"./{LOCAL_CONFIG}"
    if DEMO_CONFIG.is_file():
        return DEMO_CONFIG, f"the demo's: no --config, ${CONFIG_ENV} or ./{LOCAL_CONFIG}"
    return None, "built-in defaults"


def _config(args) -> Config:
    """The deployment's config (``find_config``); says on stderr which config and which analyst
    store the command reads, so that a command never reads another deployment's silently."""
    path, how = find_config(getattr(args, "config", None))
    config = load_config(path)
    store = getattr(args, "store", None) or config.store.url
    if store.startswith("duckdb:///") and not store.startswith("duckdb:////"):
        store = f"duckdb:///{Path(store.removeprefix('duckdb:///')).resolve()}"
    where = path.resolve() if path is not None else "-"
    print(f"camflow: config {where} ({how}); deployment {config.deployment}; store {store}",
          file=sys.stderr)
    return config


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
