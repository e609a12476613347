"""``camflow sightings|search``: where a watchlist subject was seen, and retroactive face search."""
from __future__ import annotations

import getpass
import json
import sys

from camflow.commands.common import _config


def _sites(config) -> dict:
    """Camera id -> its location's site (else its name), for the printed lines."""
    return {c.id: (c.location.site if c.location else c.name) for c in config.cameras}


def cmd_sightings(args) -> int:
    """A watchlist subject's path across cameras, in time order, from the analyst store."""
    from camflow.services.store import AnalystStore
    config = _config(args)
    store = AnalystStore.of(config.store, args.store)
    try:
        store.audit_access(getpass.getuser(), "sightings", args.subject, "cli")
        path = store.subject_path(args.subject)
    finally:
        store.close()
    sites = _sites(config)
    for when, camera_id, score, track_id, alert_id in path:
        print(f"{when:%Y-%m-%d %H:%M:%S}  {camera_id:<28} {sites.get(camera_id, '') or '':<32} "
              f"score {score:.3f}  track {track_id}")
    print(json.dumps({"subject": args.subject, "sightings": len(path),
                      "cameras": len({row[1] for row in path})}))
    return 0


def cmd_search(args) -> int:
    """Retroactive search: a watchlist subject's face among the faces kept in the store, or a
    plate's path (every vehicle track that read it, across cameras, in time order)."""
    if args.plate is not None:
        return cmd_search_plate(args)
    if args.subject is None:
        print("camflow search: give --subject ID (a face) or --plate TEXT", file=sys.stderr)
        return 2
    from camflow.services.search import SearchError, format_lines, parse_since, search
    config = _config(args)
    try:
        since_ms = parse_since(args.since or f"{config.store.embedding_retention_days:g}d")
        if args.threshold is not None and not 0 < args.threshold <= 1:
            raise SearchError(f"--threshold {args.threshold}: must be in (0, 1]")
        result = search(config, args.subject, since_ms, threshold=args.threshold,
                        store_url=args.store,
                        progress=False if args.quiet else sys.stderr.isatty())
    except SearchError as exc:
        print(f"camflow search: {exc}", file=sys.stderr)
        return 2
    sites = _sites(config)
    for line in format_lines(result, sites):
        print(line)
    print(json.dumps(result.summary()))
    return 0


def cmd_search_plate(args) -> int:
    import time
    from zoneinfo import ZoneInfo

    from camflow.services.search import SearchError, format_plate_lines, parse_since, plate_path
    from camflow.services.store import AnalystStore
    config = _config(args)
    try:
        since_ms = parse_since(args.since or f"{config.store.retention.vehicle_plates_days:g}d")
        store = AnalystStore.of(config.store, args.store)
        try:
            # Where a vehicle went is personal data: every search is audited, like face searches.
            store.audit_access(getpass.getuser(), "plate_search", args.plate,
                               "cli fuzzy" if args.fuzzy else "cli")
            passages = plate_path(store, args.plate, int(time.time() * 1000) - since_ms, args.fuzzy)
        finally:
            store.close()
    except SearchError as exc:
        print(f"camflow search: {exc}", file=sys.stderr)
        return 2
    sites = _sites(config)
    for line in format_plate_lines(passages, sites, ZoneInfo(config.time_zone)):
        print(line)
    print(json.dumps({"plate": args.plate, "fuzzy": args.fuzzy, "passages": len(passages),
                      "cameras": len({p.camera_id for p in passages}),
                      "plates": sorted({p.plate for p in passages})}))
    return 0


def register(sub) -> None:
    p = sub.add_parser("sightings", help="a watchlist subject's path across cameras")
    p.add_argument("--subject", required=True)
    p.add_argument("--store")
    p.add_argument("--config")
    p.set_defaults(func=cmd_sightings)
    p = sub.add_parser("search", help="retroactive search: a watchlist subject among the faces "
                       "kept in the store, or a plate's path across cameras")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--subject", help="watchlist face subject id")
    who.add_argument("--plate", help="a licence plate (51F-598.81 or 51F59881): every vehicle "
                     "track that read it, in time order")
    p.add_argument("--fuzzy", action="store_true", help="--plate: also reads one character "
                   "off, or two OCR confusions (8/B, 0/D)")
    p.add_argument("--since", help="look back this far: 7d, 24h, 90m (default: "
                   "store.embedding_retention_days; --plate: retention.vehicle_plates_days)")
    p.add_argument("--threshold", type=float,
                   help="cosine similarity (default: job.watchlist.face_threshold)")
    p.add_argument("--store")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--config")
    p.set_defaults(func=cmd_search)
