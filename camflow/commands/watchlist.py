"""``camflow watchlist``: enrol, remove, list and audit watchlist entries."""
from __future__ import annotations

import sys
from pathlib import Path
from datetime import datetime, timezone

from camflow.commands.common import _config


def cmd_watchlist(args) -> int:
    from camflow.services.enrolment import EnrolmentError, Watchlist, export_rows
    watchlist = Watchlist(_config(args).kafka)
    try:
        if args.action == "add":
            entry = watchlist.add_face(args.id, args.name, args.category, args.image,
                                       reason=args.reason, added_by=args.by)
            print(f"added {entry['category']} {entry['id']} ({entry['name']}) with "
                  f"{len(entry['embeddings'])} photo(s)")
        elif args.action == "add-plate":
            entry = watchlist.add_plate(args.plate, reason=args.reason, category=args.category,
                                        name=args.name, added_by=args.by)
            print(f"added plate {entry['plate_display']} ({entry['id']})")
        elif args.action == "remove":
            entry = watchlist.remove(args.id, kind=args.kind, added_by=args.by)
            print(f"removed {entry['kind']} {entry['id']}")
        elif args.action in ("list", "export"):
            rows = export_rows(watchlist.entries())
            if args.action == "export" and args.out:
                Path(args.out).write_text("\n".join(rows) + "\n")
                print(f"exported {len(rows)} entries to {args.out}")
            else:
                print("\n".join(rows))
        elif args.action == "audit":
            for change in watchlist.audit():
                what = "removed" if change["removed"] else "set"
                when = datetime.fromtimestamp(change['time_ms'] / 1000, timezone.utc).isoformat(timespec='seconds')
                print(f"{when}  {change['added_by']:<12} {what:<8} {change['kind']}:{change['id']}")
    except (EnrolmentError, KeyError, ValueError) as exc:
        print(f"camflow watchlist: {exc}", file=sys.stderr)
        return 2
    return 0


def register(sub) -> None:
    wl = sub.add_parser("watchlist", help="manage the suspect watchlist (faces and plates)")
    wl_sub = wl.add_subparsers(dest="action", required=True)
    p = wl_sub.add_parser("add", help="enrol a person from one or more photos (one face each)")
    p.add_argument("--id", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--category", required=True, choices=["wanted", "suspect", "missing"])
    p.add_argument("--image", required=True, action="append", help="photo path (repeat for more)")
    p.add_argument("--reason")
    p = wl_sub.add_parser("add-plate", help="list a vehicle by its plate")
    p.add_argument("--plate", required=True)
    p.add_argument("--reason")
    p.add_argument("--name", help="vehicle description")
    p.add_argument("--category", default="wanted", choices=["wanted", "suspect", "missing"])
    p = wl_sub.add_parser("remove", help="remove a person or plate")
    p.add_argument("--id", required=True)
    p.add_argument("--kind", default="face", choices=["face", "plate"])
    wl_sub.add_parser("list", help="current entries (without embeddings)")
    p = wl_sub.add_parser("export", help="current entries as JSON lines")
    p.add_argument("--out")
    wl_sub.add_parser("audit", help="every change: when, who, what")
    for p in wl_sub.choices.values():
        p.add_argument("--config")
        p.add_argument("--by", help="who makes the change (default: the OS user)")
    wl.set_defaults(func=cmd_watchlist)
