"""``camflow find|similar``: people and vehicles by what they looked like, without a face or a
plate (``camflow.services.appearance_search``). Every query is audited: where a person went is
personal data."""
from __future__ import annotations

import getpass
import json
import sys
import time

from camflow.commands.common import _config

# A day by default: a search scores every track in its window (~7 KB of vectors each), and
# investigators ask about hours ("around 21:00", "this morning"); --since 7d reaches back to
# the retention.
DEFAULT_LOOK_BACK = "24h"


def _window(args, config) -> tuple[int | None, int | None]:
    from camflow.services.appearance_search import parse_time
    from camflow.services.search import parse_since
    since_ms = int(time.time() * 1000) - parse_since(args.since or DEFAULT_LOOK_BACK)
    if args.after:
        since_ms = parse_time(args.after, config.time_zone)
    return since_ms, parse_time(args.until, config.time_zone)


def cmd_find(args) -> int:
    from camflow.services.appearance_search import (AppearanceSearchError, find_tracks,
                                                     format_lines, write_crops)
    from camflow.services.search import SearchError
    from camflow.services.store import AnalystStore
    config = _config(args)
    query = {k: v for k, v in (("class", args.class_name), ("upper", args.upper),
                               ("lower", args.lower), ("body", args.body),
                               ("camera", args.camera), ("site", args.site)) if v}
    try:
        since_ms, until_ms = _window(args, config)
        store = AnalystStore.of(config.store, args.store)
        try:
            store.audit_access(getpass.getuser(), "appearance_find", json.dumps(query, sort_keys=True), "cli")
            matches = find_tracks(store, config, class_name=args.class_name, upper=args.upper,
                                  lower=args.lower, body=args.body, cameras=args.camera,
                                  sites=args.site, since_ms=since_ms, until_ms=until_ms,
                                  limit=args.limit)
            crops = write_crops(store, matches, args.crops) if args.crops else []
        finally:
            store.close()
    except (AppearanceSearchError, SearchError) as exc:
        print(f"camflow find: {exc}", file=sys.stderr)
        return 2
    for line in format_lines(matches, config.time_zone, "crop px"):
        print(line)
    print(json.dumps({"query": query, "tracks": len(matches), "crops": len(crops),
                      "matches": [m.as_dict() for m in matches]}))
    return 0


def cmd_similar(args) -> int:
    from camflow.services.appearance_search import (AppearanceSearchError, format_lines,
                                                     resolve_track, similar_tracks, write_crops)
    from camflow.services.search import SearchError
    from camflow.services.store import AnalystStore
    config = _config(args)
    if not args.track and not args.alert:
        print("camflow similar: give --track CAMERA:TRACK or --alert ID", file=sys.stderr)
        return 2
    try:
        since_ms, until_ms = _window(args, config)
        store = AnalystStore.of(config.store, args.store)
        try:
            store.audit_access(getpass.getuser(), "appearance_similar",
                               args.track or f"alert:{args.alert}", "cli")
            appearance_id = resolve_track(store, args.track, args.alert)
            query, matches = similar_tracks(store, config, appearance_id, since_ms=since_ms,
                                            until_ms=until_ms, cameras=args.camera,
                                            sites=args.site, limit=args.limit)
            crops = write_crops(store, [query] + matches, args.crops) if args.crops else []
        finally:
            store.close()
    except (AppearanceSearchError, SearchError) as exc:
        print(f"camflow similar: {exc}", file=sys.stderr)
        return 2
    print(f"query: {query.camera_id} track {query.track_id} ({query.class_name}, "
          + ", ".join(f"{p} {c}" for p, c in query.colours.items()) + ")")
    for line in format_lines(matches, config.time_zone, "similarity"):
        print(line)
    print(json.dumps({"query": query.as_dict(), "tracks": len(matches), "crops": len(crops),
                      "matches": [m.as_dict() for m in matches]}))
    return 0


def _common(p) -> None:
    p.add_argument("--camera", action="append", help="only this camera (repeatable)")
    p.add_argument("--site", action="append", help="only cameras whose site contains this (repeatable)")
    p.add_argument("--since", help=f"look back this far: 7d, 24h, 90m (default {DEFAULT_LOOK_BACK}; "
                   "the store keeps store.embedding_retention_days)")
    p.add_argument("--after", help="from this date-time (ISO, the deployment's time zone)")
    p.add_argument("--until", help="up to this date-time (ISO, the deployment's time zone)")
    p.add_argument("--limit", type=int, default=20, help="at most this many tracks")
    p.add_argument("--crops", help="write each track's best crop (JPEG) into this folder")
    p.add_argument("--store")
    p.add_argument("--config")


def register(sub) -> None:
    p = sub.add_parser("find", help="people and vehicles by class, colours, place and time")
    p.add_argument("--class", dest="class_name", help="person, car, motorcycle, bus, truck, bicycle")
    p.add_argument("--upper", help="a person's upper-body colour (red, blue, dark, white, ...)")
    p.add_argument("--lower", help="a person's lower-body colour")
    p.add_argument("--body", help="a vehicle's colour")
    _common(p)
    p.set_defaults(func=cmd_find)
    p = sub.add_parser("similar", help="the tracks that look most like one track, at other "
                       "times and cameras")
    p.add_argument("--track", help="CAMERA:TRACK (or an appearance id)")
    p.add_argument("--alert", help="an alert id: its track")
    _common(p)
    p.set_defaults(func=cmd_similar)
