"""The ``camflow`` command line."""
from __future__ import annotations

import argparse
from datetime import datetime, timezone
import json
import sys
from pathlib import Path

from camflow.config import ConfigError, load_config


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


def cmd_ingest(args) -> int:
    from camflow.core.overload import DEFAULT_MAX_IN_FLIGHT
    from camflow.core.frame_store import configured_store
    from camflow.services.sampler import SourceError, ingest
    config = _config(args)
    camera = config.camera(args.camera)
    fps = args.fps or (camera.fps if camera else 1.0)
    source = args.source or (camera.source if camera else None)
    if not source:
        raise SystemExit(f"camflow ingest: no --source and camera {args.camera!r} has none configured")
    max_width = args.max_width or (camera.max_width if camera else 960)
    serve_metrics(args.metrics_port)
    if args.max_in_flight is not None and args.max_in_flight < 1:
        raise SystemExit(f"camflow ingest: --max-in-flight must be at least 1, not {args.max_in_flight}")
    try:
        report = ingest(config.kafka, args.camera, source, fps, max_width=max_width,
                        max_frames=args.max_frames, realtime=args.realtime,
                        progress=progress_wanted(args),
                        policy=args.policy or (camera.sampler_policy if camera else "keep-all"),
                        max_in_flight=args.max_in_flight or (
                            camera.sampler_max_in_flight if camera else DEFAULT_MAX_IN_FLIGHT),
                        frame_store=configured_store(config))
    except SourceError as exc:
        print(f"camflow ingest: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"camera": report.camera_id, "frames": report.frames, "bytes": report.bytes,
                      "seconds": round(report.seconds, 2), "policy": report.policy,
                      "dropped": report.dropped}))
    return 0


def cmd_job_run(args) -> int:
    from camflow.jobs.camera_job import run
    from camflow.core.kafka import bounded_run_offsets
    config = _config(args)
    from camflow.jobs.camera_job import resolve_checkpoint
    stops, watchlist_stops = bounded_run_offsets(config.kafka) if args.bounded else (None, None)
    run(config, stops, args.parallelism, watchlist_stop_offsets=watchlist_stops,
        restore_from=resolve_checkpoint(config, args.from_checkpoint))
    return 0


def cmd_job_submit(args) -> int:
    """``bin/flink run -py jobs/camera_job.py`` against the cluster from ``make up``."""
    from pathlib import Path

    from camflow.infra.flink import submit
    from camflow.jobs import camera_job
    config = _config(args)
    job_args = ["--config", str(Path(args.config).resolve())] if args.config else []
    if args.bounded:
        from camflow.core.kafka import bounded_run_offsets
        stops, watchlist_stops = bounded_run_offsets(config.kafka)
        job_args += ["--stop-offsets", json.dumps(stops)]
        if watchlist_stops is not None:
            job_args += ["--watchlist-stop-offsets", json.dumps(watchlist_stops)]
    if args.from_checkpoint and args.from_savepoint:
        raise SystemExit("camflow job submit: give --from-checkpoint or --from-savepoint, not both")
    restore = args.from_savepoint or camera_job.resolve_checkpoint(config, args.from_checkpoint)
    extra = ["-s", restore] if restore else []
    if args.allow_non_restored_state:
        if not restore:
            raise SystemExit("camflow job submit: --allow-non-restored-state needs --from-savepoint "
                             "or --from-checkpoint")
        extra.append("--allowNonRestoredState")  # state of operators the new version dropped
    done = submit(camera_job.__file__, job_args, parallelism=args.parallelism or config.job.parallelism,
                  detached=not args.bounded, timeout=None, extra=extra)
    sys.stdout.write(done.stdout or "")
    sys.stderr.write(done.stderr or "")
    return done.returncode


def cmd_job_savepoint(args) -> int:
    """Savepoint (``--stop``: stop-with-savepoint) of the deployment's running job on the
    cluster; prints the savepoint's path for ``camflow job submit --from-savepoint``."""
    from pathlib import Path

    from camflow.core.flink_rest import FlinkRest, FlinkRestError
    config = _config(args)
    if not config.job.rest_url:
        raise SystemExit("camflow job savepoint: job.rest_url (the cluster's REST API) is not set")
    flink = FlinkRest(config.job.rest_url)
    target = args.dir or (f"{config.job.checkpoint_dir.rstrip('/')}/savepoints"
                          if config.job.checkpoint_dir else None)
    if not target:
        raise SystemExit("camflow job savepoint: give --dir (or set job.checkpoint_dir: savepoints "
                         "then go to <checkpoint_dir>/savepoints)")
    if "://" not in target:
        target = Path(target).expanduser().resolve().as_uri()
    name = f"camflow-{config.deployment}"
    try:
        jobs = flink.live_jobs() if args.job_id else flink.live_jobs(name)
    except OSError as exc:
        raise SystemExit(f"camflow job savepoint: no Flink cluster answers ({exc})") from None
    if args.job_id:
        jobs = [j for j in jobs if j["jid"] == args.job_id]
    if len(jobs) != 1:
        found = ", ".join(f"{j['jid']} ({j['name']}, {j['state']})" for j in flink.live_jobs()) or "none"
        raise SystemExit(f"camflow job savepoint: {'no' if not jobs else 'more than one'} live job "
                         f"{args.job_id or repr(name)}; live jobs: {found}; pick one with --job-id")
    job = jobs[0]
    print(f"camflow job savepoint: {'stopping' if args.stop else 'savepoint of'} {job['jid']} "
          f"({job['name']}) into {target}", file=sys.stderr)
    try:
        path = flink.savepoint(job["jid"], target, stop=args.stop, timeout=args.timeout)
    except (FlinkRestError, TimeoutError) as exc:
        print(f"camflow job savepoint: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def cmd_sink(args) -> int:
    from camflow.services.sink import run_sink
    config = _config(args)
    serve_metrics(args.metrics_port)
    report = run_sink(config, store_url=args.store, idle_exit_s=args.idle_exit)
    print(json.dumps({"written": report.written, "rejected": report.rejected,
                      "expired_embeddings": report.expired_embeddings,
                      "seconds": round(report.seconds, 2)}))
    return 0


def cmd_frames_prune(args) -> int:
    """A file frame store's retention: frames older than ``frame_store.retention_minutes``
    go (S3 stores use a bucket lifecycle rule instead)."""
    import time

    from camflow.core.frame_store import FileFrameStore, configured_store
    config = _config(args)
    store = configured_store(config)
    if not isinstance(store, FileFrameStore):
        raise SystemExit("camflow frames prune: needs frame_store.url file:///... in the config "
                         "(an S3 store expires frames with a bucket lifecycle rule)")
    retention_ms = int(config.frame_store.retention_minutes * 60_000)
    while True:
        removed = store.prune(int(time.time() * 1000) - retention_ms)
        print(json.dumps({"store": store.url, "removed": removed}), flush=True)
        if not args.every:
            return 0
        time.sleep(args.every)


def cmd_models(args) -> int:
    from camflow.models import build as model_build
    from camflow.models import registry
    if args.action == "build":
        model_build.build(names=args.names or None, force=args.force,
                          progress=progress_wanted(args))
    for row in registry.list_models():
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


def cmd_eval(args) -> int:
    if args.what in ("faces", "plates", "watchlist") and not (args.images and args.labels):
        raise SystemExit(f"camflow eval {args.what}: --images and --labels are required "
                         "(a folder of images and its labels CSV)")
    if args.what == "detect" and not args.video:
        raise SystemExit("camflow eval detect: --video is required")
    if args.what == "faces":
        from camflow.evaluation.perception import eval_faces
        result = eval_faces(args.images, args.labels)
    elif args.what == "plates":
        from camflow.evaluation.perception import eval_plates
        result = eval_plates(args.images, args.labels)
    elif args.what == "watchlist":
        from camflow.evaluation.watchlist import eval_watchlist
        result = eval_watchlist(args.images, args.labels, config=_config(args))
    else:
        from camflow.evaluation.detect import eval_detect
        result = eval_detect(args.video, every=args.every, config=_config(args))
    print(json.dumps(result))
    return 0


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


def cmd_sightings(args) -> int:
    """A watchlist subject's path across cameras, in time order, from the analyst store."""
    from camflow.services.store import AnalystStore
    config = _config(args)
    store = AnalystStore(args.store or config.store.url)
    try:
        path = store.subject_path(args.subject)
    finally:
        store.close()
    sites = {c.id: (c.location.site if c.location else c.name) for c in config.cameras}
    for when, camera_id, score, track_id, alert_id in path:
        print(f"{when:%Y-%m-%d %H:%M:%S}  {camera_id:<28} {sites.get(camera_id, '') or '':<32} "
              f"score {score:.3f}  track {track_id}")
    print(json.dumps({"subject": args.subject, "sightings": len(path),
                      "cameras": len({row[1] for row in path})}))
    return 0


def cmd_search(args) -> int:
    """Retroactive search: a watchlist subject's face among the faces kept in the store."""
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
    sites = {c.id: (c.location.site if c.location else c.name) for c in config.cameras}
    for line in format_lines(result, sites):
        print(line)
    print(json.dumps(result.summary()))
    return 0


def cmd_zones(args) -> int:
    from camflow.services.zones import draw
    try:
        path = draw(_config(args), args.camera, args.image, args.out)
    except ValueError as exc:
        print(f"camflow zones: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def cmd_replay(args) -> int:
    from camflow.commands.replay import replay
    summary = replay(_config(args), args.video, args.camera, fps=args.fps,
                     print_alert=lambda alert: print(json.dumps(alert), flush=True),
                     progress=progress_wanted(args))
    print(json.dumps(summary))
    return 0


def cmd_report(args) -> int:
    """The analyst store over a time range as one self-contained HTML file (plots inline)."""
    import time
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from camflow.services.report import build_report
    from camflow.services.search import SearchError, parse_since
    config = _config(args)
    try:
        since_ms = parse_since(args.since)
        ZoneInfo(args.tz)
    except SearchError as exc:
        print(f"camflow report: {exc}", file=sys.stderr)
        return 2
    except (ZoneInfoNotFoundError, ValueError):
        print(f"camflow report: --tz {args.tz!r}: unknown time zone (e.g. UTC, Asia/Ho_Chi_Minh)",
              file=sys.stderr)
        return 2
    until_ms = int(time.time() * 1000)
    html = build_report(config, until_ms - since_ms, until_ms, store_url=args.store, tz_name=args.tz)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    print(json.dumps({"out": str(out), "bytes": len(html.encode("utf-8"))}))
    return 0


def cmd_console(args) -> int:
    if args.action == "hash-password":
        import getpass

        from camflow.services.console.auth import hash_password
        password = (sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty()
                    else getpass.getpass("password: "))
        if len(password) < 8:
            print("camflow console: a password needs at least 8 characters", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    from camflow.services.console.app import serve
    return serve(_config(args), store_url=args.store, host=args.host, port=args.port)


def cmd_status(args) -> int:
    """Topic lags per consumer group and the Flink job's health (camflow/services/status.py)."""
    from confluent_kafka import KafkaException

    from camflow.services.status import format_status, status
    config = _config(args)
    try:
        report = status(config, exact=args.exact, flink_url=args.flink_url)
    except KafkaException as exc:
        print(f"camflow status: Kafka {config.kafka.bootstrap_servers}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report) if args.json else "\n".join(format_status(report)))
    return 0


def cmd_demo(args) -> int:
    from camflow.commands.demo import run_demo
    return run_demo(args.config, video=args.video, fps=args.fps, cameras=args.cameras,
                    store_url=args.store)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camflow", description="Streaming analytics for CCTV networks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="sample a camera or video and publish FrameSamples")
    p.add_argument("--camera", required=True, help="camera id (the Kafka key)")
    p.add_argument("--source", help="rtsp://, http(s):// URL or a video file (default: the camera's configured source)")
    p.add_argument("--fps", type=float, help="samples per second (default: the camera's fps)")
    p.add_argument("--max-width", type=int)
    p.add_argument("--max-frames", type=int)
    p.add_argument("--realtime", action="store_true", help="pace file replay at the video's speed")
    p.add_argument("--policy", choices=["keep-all", "latest-only"],
                   help="when the broker falls behind: keep-all waits (never drops), latest-only "
                        "drops older unsent frames (default: the camera's sampler_policy, else keep-all)")
    p.add_argument("--max-in-flight", type=int, metavar="N",
                   help="unacknowledged frames before the policy applies (default: the camera's "
                        "sampler_max_in_flight, else 100)")
    p.add_argument("--config")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)

    job = sub.add_parser("job", help="run or submit the Flink job").add_subparsers(dest="action", required=True)
    p = job.add_parser("run", help="run on Flink's embedded mini-cluster")
    p.add_argument("--config")
    p.add_argument("--bounded", action="store_true", help="process the frames now in the topic, then stop")
    p.add_argument("--parallelism", type=int)
    p.add_argument("--from-checkpoint", help="'latest' retained checkpoint under job.checkpoint_dir, or a path")
    p.set_defaults(func=cmd_job_run)
    p = job.add_parser("submit", help="submit to a Flink cluster (default: the local one from `make up`)")
    p.add_argument("--config")
    p.add_argument("--bounded", action="store_true")
    p.add_argument("--parallelism", type=int)
    p.add_argument("--from-checkpoint", help="'latest' retained checkpoint, or a checkpoint/savepoint path")
    p.add_argument("--from-savepoint", metavar="PATH", help="restore from this savepoint "
                   "(printed by `camflow job savepoint`), e.g. to upgrade the job")
    p.add_argument("--allow-non-restored-state", action="store_true",
                   help="restore even if the savepoint holds state of operators this version dropped")
    p.set_defaults(func=cmd_job_submit)
    p = job.add_parser("savepoint", help="savepoint the running job on the cluster (--stop: stop "
                       "with a savepoint, for an upgrade); prints the savepoint path")
    p.add_argument("--config")
    p.add_argument("--stop", action="store_true", help="stop the job once the savepoint is written")
    p.add_argument("--dir", help="where to write it (default: <job.checkpoint_dir>/savepoints); "
                   "must be reachable by the JobManager and every TaskManager")
    p.add_argument("--job-id", help="the job (default: the one running as camflow-<deployment>)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.set_defaults(func=cmd_job_savepoint)

    p = sub.add_parser("sink", help="write alerts, aggregates and analyses to the analyst store")
    p.add_argument("--config")
    p.add_argument("--store", help="duckdb:///PATH or postgresql://... (default: config store.url)")
    p.add_argument("--idle-exit", type=float, help="stop after this many seconds without records")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.set_defaults(func=cmd_sink)

    frames = sub.add_parser("frames", help="the claim-check frame store").add_subparsers(
        dest="action", required=True)
    p = frames.add_parser("prune", help="delete frames past frame_store.retention_minutes")
    p.add_argument("--config")
    p.add_argument("--every", type=float, help="keep pruning every this many seconds")
    p.set_defaults(func=cmd_frames_prune)

    p = sub.add_parser("models", help="build or list the default models")
    p.add_argument("action", choices=["build", "list"])
    p.add_argument("names", nargs="*")
    p.add_argument("--force", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("eval", help="measure model accuracy on labelled data")
    p.add_argument("what", choices=["faces", "plates", "detect", "watchlist"])
    p.add_argument("--images")
    p.add_argument("--labels")
    p.add_argument("--video")
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--config")
    p.set_defaults(func=cmd_eval)

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

    p = sub.add_parser("sightings", help="a watchlist subject's path across cameras")
    p.add_argument("--subject", required=True)
    p.add_argument("--store")
    p.add_argument("--config")
    p.set_defaults(func=cmd_sightings)

    p = sub.add_parser("search", help="retroactive search: a watchlist subject among the faces "
                       "kept in the store")
    p.add_argument("--subject", required=True, help="watchlist face subject id")
    p.add_argument("--since", help="look back this far: 7d, 24h, 90m "
                   "(default: store.embedding_retention_days)")
    p.add_argument("--threshold", type=float,
                   help="cosine similarity (default: job.watchlist.face_threshold)")
    p.add_argument("--store")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--config")
    p.set_defaults(func=cmd_search)

    zones = sub.add_parser("zones", help="check a camera's scene").add_subparsers(dest="action", required=True)
    p = zones.add_parser("draw", help="render the camera's zones and lines over a frame (PNG)")
    p.add_argument("--camera", required=True)
    p.add_argument("--image", required=True, help="a frame (image) or a video (its first frame)")
    p.add_argument("--out", help="PNG path (default: CAMERA-zones.png)")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_zones)

    p = sub.add_parser("replay", help="run the real job over recorded footage; alerts as JSON lines")
    p.add_argument("--video", required=True)
    p.add_argument("--camera", required=True, help="camera id (a camera the config lacks gets the zone-free rules)")
    p.add_argument("--config")
    p.add_argument("--fps", type=float)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("report", help="alerts, counts, anomalies, subject paths and evidence "
                       "from the analyst store as one self-contained HTML file")
    p.add_argument("--since", default="24h", help="look back this far: 24h, 7d, 90m (default 24h)")
    p.add_argument("--out", default="report.html")
    p.add_argument("--tz", default="UTC", help="time zone of the plots, e.g. Asia/Ho_Chi_Minh")
    p.add_argument("--store")
    p.add_argument("--config")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("console", help="the operators' web console (live alerts, cameras, subjects)")
    p.add_argument("action", nargs="?", default="serve", choices=["serve", "hash-password"],
                   help="serve (default), or hash-password: a password read from stdin "
                   "as a hash for console.users")
    p.add_argument("--host", help="bind address (default: console.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="default: console.port")
    p.add_argument("--store")
    p.add_argument("--config")
    p.set_defaults(func=cmd_console)
    p = sub.add_parser("status", help="topic lags per consumer group and the Flink job's health")
    p.add_argument("--config")
    p.add_argument("--exact", action="store_true",
                   help="find end offsets by reading the partitions (the dev broker reports "
                        "wrong ones after batched writes)")
    p.add_argument("--flink-url", help="Flink REST API (default: job.rest_url)")
    p.add_argument("--json", action="store_true", help="everything as one JSON object")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("demo", help="sample a video, run the job on the mini-cluster, summarise")
    p.add_argument("--config", default=None)
    p.add_argument("--video", help="video file or stream URL (default: vtest.avi)")
    p.add_argument("--fps", type=float)
    p.add_argument("--cameras", type=int, default=1, help="how many cameras replay the video")
    p.add_argument("--store")
    p.set_defaults(func=cmd_demo)
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
