"""``camflow replay``: the real job, bounded, over recorded footage (forensics).

The video is sampled into fresh topics of the configured broker (so a replay never mixes with
live data), the job runs on the embedded mini-cluster until the last frame, and every alert is
handed to ``print_alert``; the summary counts alerts by type. A camera id the config lacks is
added with no scene, so the zone-free rules (falls, running, crowd dispersal) and the window
rules apply with their defaults.
"""
from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from typing import Callable

from camflow.config import Camera, Config
from camflow.commands.common import _config, progress_wanted
from camflow.core.frame_store import configured_store
from camflow.core.kafka import ensure_topic, read_topic
from camflow.schemas.codec import AvroCodec
from camflow.services.sampler import ingest, video_duration_ms


def replay_config(config: Config, camera_id: str) -> Config:
    """The config with per-replay topics, and the camera added when the config lacks it."""
    run = f"replay-{camera_id}-{uuid.uuid4().hex[:8]}"
    topics = config.kafka.topics.model_copy(update={
        name: f"{getattr(config.kafka.topics, name)}-{run}"
        for name in ("frames", "analyses", "alerts", "aggregates", "dead_letters", "sightings",
                     "face_embeddings", "appearances")})
    kafka = config.kafka.model_copy(update={"topics": topics, "group_id": run})
    cameras = list(config.cameras)
    if config.camera(camera_id) is None:
        cameras.append(Camera(id=camera_id, name=f"{camera_id} (replay, no scene)"))
    return config.model_copy(update={"kafka": kafka, "cameras": cameras})


DAY_MS = 86_400_000
HISTORY_FPS = 1.0


def publish_with_history(config: Config, camera_id: str, video: str, fps: float,
                         history_days: int = 0, progress: bool | None = None):
    """The footage as captured just now, preceded by ``history_days`` replays of it at the same
    time on each earlier day (oldest first, so event time only moves forward): the windowed
    anomaly baseline learns those days and scores the run (with ``job.anomaly.slots:
    hour_of_day``; per hour of the week only a replay 7 days back counts). Returns the reports
    (the run's last) and the capture time the run starts at."""
    camera = config.camera(camera_id) or Camera(id=camera_id)
    start_ms = int(time.time() * 1000) - video_duration_ms(video)
    reports = []
    for days_back in range(history_days, -1, -1):
        # A baseline learns per-frame means per window: the history is sampled at 1 fps at
        # most, which gives the same windows for a fraction of the frames.
        rate = fps if days_back == 0 else min(fps, HISTORY_FPS)
        reports.append(ingest(config.kafka, camera_id, video, rate, max_width=camera.max_width,
                              start_ms=start_ms - days_back * DAY_MS, progress=progress,
                              frame_store=configured_store(config)))
    return reports, start_ms


def stop_offsets(reports) -> dict[int, int]:
    """Per partition, the offset after the last frame any of ``reports`` published."""
    stops: dict[int, int] = {}
    for report in reports:
        for (_, partition), offset in report.next_offsets.items():
            stops[partition] = max(stops.get(partition, 0), offset)
    return stops


@contextmanager
def analysis_progress(config: Config, frames: int, progress: bool | None):
    """A progress bar of the job's run: frames whose analysis reached the analyses topic
    (read alongside by a consumer thread; nothing happens when the bar is off)."""
    from tqdm import tqdm
    bar = tqdm(total=frames, unit="frame", desc="analyse", file=sys.stderr,
               disable=None if progress is None else not progress)
    if bar.disable:
        yield
        return
    from confluent_kafka import Consumer, TopicPartition
    stop = threading.Event()

    def follow():
        consumer = Consumer({**config.kafka.client_conf(), "group.id": "camflow-replay-progress",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(config.kafka.topics.analyses, 0, 0)])
        try:
            while not stop.is_set() and bar.n < frames:
                msg = consumer.poll(0.5)
                if msg is not None and not msg.error():
                    bar.update(1)
        finally:
            consumer.close()
    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    try:
        yield
    finally:
        stop.set()
        follower.join(timeout=5)
        bar.close()


def replay(config: Config, video: str, camera_id: str, fps: float | None = None,
           print_alert: Callable[[dict], None] | None = None,
           progress: bool | None = None, history_days: int = 0,
           store_url: str | None = None) -> dict:
    """``progress``: bars for sampling and analysis on stderr (None: when it is a terminal);
    ``history_days``: replay the footage first as the same time on that many earlier days, so
    that the anomaly baseline is learned before the run (``publish_with_history``);
    ``store_url``: the sink then writes the run's records to this analyst store (and, with an
    evidence store and a frame store, cuts each alert's clip)."""
    from camflow.jobs.camera_job import run

    started = time.monotonic()
    config = replay_config(config, camera_id)
    camera, topics = config.camera(camera_id), config.kafka.topics
    for name in ("frames", "analyses", "alerts", "aggregates", "dead_letters", "sightings",
                 "face_embeddings", "appearances"):
        ensure_topic(config.kafka, getattr(topics, name), 1)
    reports, run_start_ms = publish_with_history(config, camera_id, video, fps or camera.fps,
                                                 history_days, progress)
    report, stops = reports[-1], stop_offsets(reports)
    watchlist_stops = None
    try:  # the current watchlist, if the deployment has one
        from camflow.core.kafka import scan_next_offsets
        watchlist_stops = scan_next_offsets(config.kafka, topics.watchlist, idle_timeout_s=1.5)
    except Exception:  # noqa: BLE001 - no watchlist topic: replay without one
        pass
    with analysis_progress(config, sum(r.frames for r in reports), progress):
        run(config, stops, watchlist_stop_offsets=watchlist_stops,
            job_name=f"camflow-replay-{camera_id}")
    stored = None
    if store_url is not None:
        from camflow.services.sink import run_sink
        stored = run_sink(config, store_url=store_url, idle_exit_s=3.0)
    alerts = [AvroCodec("Alert").decode(m.value())
              for m in read_topic(config.kafka, topics.alerts, idle_timeout_s=2.0)]
    alerts.sort(key=lambda a: (a["time_ms"], a["type"], a["alert_id"]))
    for alert in alerts:
        if print_alert is not None:
            alert = {k: v for k, v in alert.items() if k != "evidence_jpeg"} | {
                "has_evidence_jpeg": alert.get("evidence_jpeg") is not None}
            print_alert(alert)
    aggregates = [AvroCodec("Aggregate").decode(m.value())
                  for m in read_topic(config.kafka, topics.aggregates, idle_timeout_s=1.0)]
    crossings: Counter = Counter()
    for window in aggregates:
        crossings.update(window["line_crossings"])
    run_windows = [w for w in aggregates if w["window_end_ms"] > run_start_ms]
    return {"camera": camera_id, "video": video, "frames": report.frames, "alerts": len(alerts),
            "alerts_by_type": dict(sorted(Counter(a["type"] for a in alerts).items())),
            "aggregates": len(aggregates), "line_crossings": dict(sorted(crossings.items())),
            "history_days": history_days,
            "scored_windows": sum(w["anomaly_score"] is not None for w in run_windows),
            "snapshots": sum(bool(a["evidence_ref"]) for a in alerts),
            "alerts_topic": topics.alerts,
            **({"stored": stored.written, "clips": stored.clips} if stored is not None else {}),
            "seconds": round(time.monotonic() - started, 1)}



def cmd_replay(args) -> int:
    summary = replay(_config(args), args.video, args.camera, fps=args.fps,
                     print_alert=lambda alert: print(json.dumps(alert), flush=True),
                     progress=progress_wanted(args), history_days=args.history_days,
                     store_url=args.store)
    print(json.dumps(summary))
    return 0


def register(sub) -> None:
    p = sub.add_parser("replay", help="run the real job over recorded footage; alerts as JSON lines")
    p.add_argument("--video", required=True)
    p.add_argument("--camera", required=True, help="camera id (a camera the config lacks gets the zone-free rules)")
    p.add_argument("--config")
    p.add_argument("--fps", type=float)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--store", metavar="URL", help=(
        "then write the run's records to this analyst store (duckdb:///PATH or "
        "postgresql://...), with each alert's clip when the config has an evidence store"))
    p.add_argument("--history-days", type=int, default=0, metavar="N",
                   help="first replay the footage as the same time on N earlier days, so the "
                        "anomaly baseline is learned and the run's windows are scored")
    p.set_defaults(func=cmd_replay)
