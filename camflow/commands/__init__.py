"""The ``camflow`` command line: one module per command group, each adding its parsers
(``register``) and handling them (``cmd_*``).

Exit status: 0 done; 1 a runtime failure (a broker or cluster that does not answer, a change
refused, a check that failed); 2 a usage or config error (bad arguments, an invalid or missing
config file, a setting the command needs): argparse's own, ``ConfigError``, ``UsageError``, and
any command that stops with ``SystemExit("message")``.
"""
from __future__ import annotations

import argparse
import sys

from camflow import __version__
from camflow.commands import (appearance, config, console, demo, evaluate, frames, ingest, job,
                              models, notify, replay, report, schemas, search, sink, status,
                              topics, watchlist, zones)
from camflow.commands.common import Failure, UsageError
from camflow.config import ConfigError

GROUPS = (ingest, job, sink, frames, models, evaluate, watchlist, search, appearance, zones, replay,
          report, notify, console, status, topics, schemas, demo, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camflow", description="Streaming analytics for CCTV networks",
                                     epilog="exit status: 0 done, 1 runtime failure, "
                                            "2 usage or config error")
    parser.add_argument("--version", action="version", version=f"camflow {__version__}")
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
    except (UsageError, Failure) as exc:
        print(exc, file=sys.stderr)
        raise
    except SystemExit as exc:
        if isinstance(exc.code, str):  # a command that stopped with its message: usage/config
            print(exc.code, file=sys.stderr)
            raise UsageError(exc.code) from None
        raise


if __name__ == "__main__":
    sys.exit(main())
