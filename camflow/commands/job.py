"""``camflow job``: run, submit and savepoint the Flink job."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from camflow.commands.common import Failure, UsageError, _config, find_config


def rest_address(url: str) -> str:
    """``host:port`` of a Flink REST URL, as ``flink run -m`` takes it."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise UsageError(f"camflow job: {url!r} is no Flink REST URL (http://host:port)")
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _rest_url(args, config) -> str:
    url = getattr(args, "flink_url", None) or config.job.rest_url
    if not url:
        raise UsageError(f"camflow job {args.action}: job.rest_url (the cluster's REST API) is not "
                         "set; set it in the config or give --flink-url")
    return url


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
    """``bin/flink run -py jobs/camera_job.py`` against the cluster at ``job.rest_url`` (or
    ``--flink-url``; default the local one from ``make up``, ``http://localhost:8081``)."""

    from camflow.infra import flink
    from camflow.jobs import camera_job
    config = _config(args)
    address = rest_address(_rest_url(args, config))
    path, _ = find_config(args.config)
    job_args = ["--config", str(path.resolve())] if path is not None else []
    if args.bounded:
        from camflow.core.kafka import bounded_run_offsets
        stops, watchlist_stops = bounded_run_offsets(config.kafka)
        job_args += ["--stop-offsets", json.dumps(stops)]
        if watchlist_stops is not None:
            job_args += ["--watchlist-stop-offsets", json.dumps(watchlist_stops)]
    if args.from_checkpoint and args.from_savepoint:
        raise UsageError("camflow job submit: give --from-checkpoint or --from-savepoint, not both")
    restore = args.from_savepoint or camera_job.resolve_checkpoint(config, args.from_checkpoint)
    extra = ["-s", restore] if restore else []
    if args.allow_non_restored_state:
        if not restore:
            raise UsageError("camflow job submit: --allow-non-restored-state needs --from-savepoint "
                             "or --from-checkpoint")
        extra.append("--allowNonRestoredState")  # state of operators the new version dropped
    # The Python the cluster's workers run: the cluster's own where the config names it.
    python = config.job.flink_options.get("python.executable", flink.venv_python())
    cmd = ["bash", str(flink.flink_home() / "bin" / "flink"), "run", "-m", address,
           "-py", str(Path(camera_job.__file__).resolve()), "-pyexec", python,
           "-pyclientexec", flink.venv_python(),
           "-p", str(args.parallelism or config.job.parallelism)]
    if not args.bounded:
        cmd.append("-d")
    print(f"camflow job submit: to the Flink cluster at {address}", file=sys.stderr)
    done = flink._run(cmd + extra + job_args, check=False, timeout=None)
    sys.stdout.write(done.stdout or "")
    sys.stderr.write(done.stderr or "")
    return done.returncode


def cmd_job_savepoint(args) -> int:
    """Savepoint (``--stop``: stop-with-savepoint) of the deployment's running job on the
    cluster; prints the savepoint's path for ``camflow job submit --from-savepoint``."""

    from camflow.core.flink_rest import FlinkRest, FlinkRestError
    config = _config(args)
    flink = FlinkRest(_rest_url(args, config))
    target = args.dir or (f"{config.job.checkpoint_dir.rstrip('/')}/savepoints"
                          if config.job.checkpoint_dir else None)
    if not target:
        raise UsageError("camflow job savepoint: give --dir (or set job.checkpoint_dir: savepoints "
                         "then go to <checkpoint_dir>/savepoints)")
    if "://" not in target:
        target = Path(target).expanduser().resolve().as_uri()
    name = f"camflow-{config.deployment}"
    try:
        jobs = flink.live_jobs() if args.job_id else flink.live_jobs(name)
    except OSError as exc:
        raise Failure(f"camflow job savepoint: no Flink cluster answers at {flink.url} ({exc})") from None
    if args.job_id:
        jobs = [j for j in jobs if j["jid"] == args.job_id]
    if len(jobs) != 1:
        found = ", ".join(f"{j['jid']} ({j['name']}, {j['state']})" for j in flink.live_jobs()) or "none"
        raise Failure(f"camflow job savepoint: {'no' if not jobs else 'more than one'} live job "
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


def register(sub) -> None:
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
    p.add_argument("--flink-url", help="the cluster's REST API (default: job.rest_url)")
    p.set_defaults(func=cmd_job_submit)
    p = job.add_parser("savepoint", help="savepoint the running job on the cluster (--stop: stop "
                       "with a savepoint, for an upgrade); prints the savepoint path")
    p.add_argument("--config")
    p.add_argument("--stop", action="store_true", help="stop the job once the savepoint is written")
    p.add_argument("--dir", help="where to write it (default: <job.checkpoint_dir>/savepoints); "
                   "must be reachable by the JobManager and every TaskManager")
    p.add_argument("--job-id", help="the job (default: the one running as camflow-<deployment>)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--flink-url", help="the cluster's REST API (default: job.rest_url)")
    p.set_defaults(func=cmd_job_savepoint)
