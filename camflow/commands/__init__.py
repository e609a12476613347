"""The ``camflow`` command line: one module per command group, each adding its parsers
(``register``) and handling them (``cmd_*``)."""
from __future__ import annotations

import argparse
import sys

from camflow.commands import (config, console, demo, evaluate, frames, ingest, job, models, notify,
                              replay, report, search, sink, status, watchlist, zones)
from camflow.config import ConfigError

GROUPS = (ingest, job, sink, frames, models, evaluate, watchlist, search, zones, replay, report,
          notify, console, status, demo, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camflow", description="Streaming analytics for CCTV networks")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"camflow: {exc}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
