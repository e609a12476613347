"""``make demo``: a real video through the local broker and the job on the mini-cluster.

Steps: start a fresh local broker, create the topics, sample the video as N cameras, run the
job bounded to exactly the frames sent, write its outputs to the DuckDB analyst store, and
summarise. The LAST line printed is one JSON object with the counts and the wall time.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from camflow.config import Camera, Config, load_config
from camflow.core.kafka import read_topic

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "infra" / "config" / "demo.yaml"


def demo_video() -> str:
    """vtest.avi from Debian's opencv-doc package (fetched into the cache if not installed)."""
    out = subprocess.run(["bash", str(REPO / "infra" / "fetch_video.sh")], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def topic_partitions(config: Config) -> dict[str, int]:
    t = config.kafka.topics
    return {name: t.partitions for name in (t.frames, t.analyses, t.alerts, t.aggregates,
                                              t.dead_letters)}


def count_outputs(config: Config, run_start_ms: int = 0) -> dict:
    """What the job put out for the run (capture times from ``run_start_ms``: not the history
    replayed before it)."""
    from camflow.schemas.codec import AvroCodec
    topics = config.kafka.topics
    analyses = [a for a in (AvroCodec("FrameAnalysis").decode(m.value())
                            for m in read_topic(config.kafka, topics.analyses))
                if a["capture_ms"] >= run_start_ms]
    windows = [w for w in (AvroCodec("Aggregate").decode(m.value())
                           for m in read_topic(config.kafka, topics.aggregates))
               if w["window_end_ms"] > run_start_ms]
    alerts = [a for a in (AvroCodec("Alert").decode(m.value())
                          for m in read_topic(config.kafka, topics.alerts))
              if a["time_ms"] >= run_start_ms]
    tracks = {(a["camera_id"], d["track_id"]) for a in analyses for d in a["detections"]
              if d["track_id"] >= 0}
    return {
        "frames": len(analyses),
        "detections": sum(len(a["detections"]) for a in analyses),
        "tracks": len(tracks),
        "persons": sum(d["class_name"] == "person" for a in analyses for d in a["detections"]),
        "alerts": len(alerts),
        "aggregates": len(windows),
        # tumbling windows carry the anomaly score (sliding ones are for dashboards)
        "scored_windows": sum(w["anomaly_score"] is not None for w in windows),
        "dead_letters": sum(1 for _ in read_topic(config.kafka, topics.dead_letters)),
    }


def run_demo(config_path: str | None = None, video: str | None = None, fps: float | None = None,
             cameras: int = 1, store_url: str | None = None, history_days: int = 2) -> int:
    from camflow.infra import broker
    from camflow.jobs.camera_job import run as run_job
    from camflow.commands.replay import publish_with_history, stop_offsets as last_offsets
    from camflow.services.sink import run_sink
    from camflow.services.store import AnalystStore

    started = time.monotonic()
    config = load_config(config_path or DEFAULT_CONFIG)
    base = config.cameras[0] if config.cameras else Camera(id="walkway")
    video = video or base.source or demo_video()
    fps = fps or base.fps
    # N cameras replay the same video; extra ones are added to the config so the job admits them.
    ids = [base.id] + [f"{base.id}-{i}" for i in range(2, cameras + 1)]
    for extra in ids[1:]:
        config.cameras.append(base.model_copy(update={"id": extra}))

    step = lambda text: print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)
    step("starting a fresh local broker (Tansu, in-memory)")
    broker.stop()
    broker.start()
    broker.ensure_topics(config.kafka.bootstrap_servers, topic_partitions(config))

    step(f"sampling {video} at {fps} fps as camera(s) {', '.join(ids)}"
         + (f", after the same footage as the same time on {history_days} earlier day(s), "
            "so the anomaly baseline is learned first" if history_days else ""))
    reports, run_start_ms = [], None
    for camera_id in ids:
        published, run_start_ms = publish_with_history(config, camera_id, video, fps, history_days)
        reports += published
        step(f"  {camera_id}: {published[-1].frames} frames published "
             f"({published[-1].bytes / 1e6:.1f} MB) + {len(published) - 1} day(s) of history")
    stop_offsets = last_offsets(reports)

    step("running the Flink job on the embedded mini-cluster (bounded to the frames sent)")
    job_started = time.monotonic()
    run_job(config, stop_offsets)
    job_seconds = time.monotonic() - job_started

    step("writing alerts, aggregates and analyses to the analyst store")
    store_url = store_url or config.store.url
    if store_url.startswith("duckdb:///") and not store_url.startswith("duckdb:////"):
        Path(store_url.removeprefix("duckdb:///")).unlink(missing_ok=True)  # a fresh demo store
    run_sink(config, store_url=store_url, idle_exit_s=5.0)
    counts = count_outputs(config, run_start_ms)
    store = AnalystStore(store_url)
    busiest = store.busiest(3)
    stored = store.counts()
    store.close()

    seconds = time.monotonic() - started
    fps_through_job = counts["frames"] / job_seconds if job_seconds else 0.0
    print()
    print(f"camflow demo: {counts['frames']} frames from {len(ids)} camera(s) analysed in "
          f"{job_seconds:.1f} s on the mini-cluster ({fps_through_job:.1f} frames/s, "
          f"job start-up included).")
    print(f"  {counts['detections']} detections ({counts['persons']} persons), "
          f"{counts['tracks']} tracks, {counts['aggregates']} window aggregates "
          f"({counts['scored_windows']} scored against the learned baseline), "
          f"{counts['alerts']} alerts, {counts['dead_letters']} dead letters.")
    for camera_id, name, most in busiest:
        print(f"  most {name}s in one frame at {camera_id}: {most}")
    print(f"  analyst store {store_url}: {stored}")
    print(json.dumps({"frames": counts["frames"], "detections": counts["detections"],
                      "tracks": counts["tracks"], "alerts": counts["alerts"],
                      "aggregates": counts["aggregates"], "scored_windows": counts["scored_windows"],
                      "dead_letters": counts["dead_letters"],
                      "seconds": round(seconds, 1)}))
    return 0 if counts["frames"] else 1


def cmd_demo(args) -> int:
    return run_demo(args.config, video=args.video, fps=args.fps, cameras=args.cameras,
                    store_url=args.store, history_days=args.history_days)


def register(sub) -> None:
    p = sub.add_parser("demo", help="sample a video, run the job on the mini-cluster, summarise")
    p.add_argument("--config", default=None)
    p.add_argument("--video", help="video file or stream URL (default: vtest.avi)")
    p.add_argument("--fps", type=float)
    p.add_argument("--cameras", type=int, default=1, help="how many cameras replay the video")
    p.add_argument("--store")
    p.add_argument("--history-days", type=int, default=2, metavar="N",
                   help="replay the footage first as the same time on N earlier days, so that "
                        "windows are scored against a learned baseline (0: none)")
    p.set_defaults(func=cmd_demo)
