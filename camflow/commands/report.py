"""``camflow report``: the analysts' HTML report."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from camflow.commands.common import _config


def cmd_report(args) -> int:
    """The analyst store over a time range as one self-contained HTML file (plots inline)."""
    import time
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from camflow.services.report import build_report
    from camflow.services.search import SearchError, parse_since
    config = _config(args)
    try:
        since_ms = parse_since(args.since)
        if args.tz is not None:
            ZoneInfo(args.tz)
    except SearchError as exc:
        print(f"camflow report: {exc}", file=sys.stderr)
        return 2
    except (ZoneInfoNotFoundError, ValueError):
        print(f"camflow report: --tz {args.tz!r}: unknown time zone (e.g. UTC, Asia/Ho_Chi_Minh)",
              file=sys.stderr)
        return 2
    until_ms = int(time.time() * 1000)
    try:
        html = build_report(config, until_ms - since_ms, until_ms, store_url=args.store,
                            tz_name=args.tz, plates=args.plate or [])
    except SearchError as exc:  # a --plate too short to be one
        print(f"camflow report: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    print(json.dumps({"out": str(out), "bytes": len(html.encode("utf-8"))}))
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="alerts, counts, anomalies, subject paths and evidence "
                       "from the analyst store as one self-contained HTML file")
    p.add_argument("--since", default="24h", help="look back this far: 24h, 7d, 90m (default 24h)")
    p.add_argument("--out", default="report.html")
    p.add_argument("--tz", default=None, help="time zone of the report (default: the config's time_zone), e.g. Asia/Ho_Chi_Minh")
    p.add_argument("--plate", action="append", help="also this plate's path across camera "
                   "sites (repeatable; audited)")
    p.add_argument("--store")
    p.add_argument("--config")
    p.set_defaults(func=cmd_report)
