"""A soak run: the job on the local standalone cluster at a sustainable rate for 10 minutes.

    python -m bench.soak [--cameras 6] [--fps 1] [--minutes 10] [--videos ../shared/data/video]

Every 10 s it samples the TaskManagers' memory (JVM + Python workers, RSS from /proc), the
job's consumer lag on the frames topic (frames acknowledged by the broker minus the offsets
the job committed with its last checkpoint), and the job's checkpoints (Flink REST). Memory
should stay flat (bounded state: track TTL, bounded recognition/behaviour state, derived
indices), lag bounded, checkpoints short. The LAST line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import yaml

from camflow.jobs.environment import child_env

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def tm_rss_mb() -> float:
    """The TaskManagers' memory: their JVMs and the Python workers under them."""
    from bench.chaos import task_manager_pids, tree_rss_mb
    return tree_rss_mb(task_manager_pids())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "data" / "video"))
    args = parser.parse_args(argv)

    from confluent_kafka import Consumer, TopicPartition

    from bench.pipeline import VIDEO_SUFFIXES, camera_frames
    from camflow.config import Config
    from camflow.infra import broker, flink
    from bench.chaos import job_state, wait_running
    from camflow.core.kafka import DeliveryTracker, ensure_topic, produce_reliably, reliable_producer
    from camflow.schemas.codec import AvroCodec

    run = uuid.uuid4().hex[:8]
    work = REPO / "var" / "soak" / run
    work.mkdir(parents=True, exist_ok=True)
    bootstrap = broker.start()
    names = ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
             "watchlist_audit", "sightings", "face_embeddings")
    cameras = [f"soak-cam-{c:02d}" for c in range(args.cameras)]
    raw = {"deployment": f"soak-{run}", "cameras": [{"id": c, "crowd_limit": 10} for c in cameras],
           "kafka": {"bootstrap_servers": bootstrap, "group_id": f"soak-{run}",
                     "topics": {**{n: f"soak-{n}-{run}" for n in names}, "partitions": 2}},
           "job": {"parallelism": 2, "checkpoint_interval_ms": 10000,
                   "checkpoint_dir": (work / "checkpoints").as_uri(), "window_ms": 60000,
                   "detector": {"threads": 1}}}
    config = Config.model_validate(raw)
    (work / "soak.yaml").write_text(yaml.safe_dump(raw))
    for n in names:
        ensure_topic(config.kafka, getattr(config.kafka.topics, n), 2)
    videos = sorted(p for p in Path(args.videos).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    clips = list(camera_frames(videos, args.cameras, args.fps, 180, max_width=960).values())
    frames = dict(zip(cameras, clips))  # 3 minutes per camera, looped

    flink.stop_cluster()
    flink.start_cluster(taskmanagers=2, slots=1)
    subprocess.run([sys.executable, "-m", "camflow.commands", "job", "submit", "--config",
                    str(work / "soak.yaml")], check=True, capture_output=True, cwd=REPO,
                   env=child_env())
    jid = wait_running(flink)
    print(f"[soak] job {jid} running; {args.cameras} cameras x {args.fps} fps for "
          f"{args.minutes} min", flush=True)

    tracker, stop = DeliveryTracker(), threading.Event()

    def publish():
        codec, producer = AvroCodec("FrameSample"), reliable_producer(config.kafka)
        tick, t0 = 0, time.monotonic()
        while not stop.is_set():
            time.sleep(max(0.0, t0 + tick / args.fps - time.monotonic()))
            capture_ms = int(time.time() * 1000)
            for c in cameras:
                jpeg = frames[c][tick % len(frames[c])]
                produce_reliably(producer, config.kafka.topics.frames, codec.encode({
                    "camera_id": c, "capture_ms": capture_ms, "sequence": tick, "jpeg": jpeg,
                    "jpeg_ref": None, "width": 0, "height": 0, "sampler_id": "soak"}),
                    c.encode(), capture_ms, tracker)
            producer.poll(0)
            tick += 1
        producer.flush(60)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    committed = Consumer({**config.kafka.client_conf(),
                          "group.id": f"{config.kafka.group_id}-job-{config.kafka.topics.frames}"})
    samples = []
    started = time.monotonic()
    while time.monotonic() - started < args.minutes * 60:
        time.sleep(10)
        produced = sum(tracker.next_offsets.values())
        offsets = committed.committed([TopicPartition(config.kafka.topics.frames, p) for p in range(2)],
                                      timeout=10)
        done = sum(max(0, tp.offset) for tp in offsets)
        checkpoints = flink.rest().get(f"/jobs/{jid}/checkpoints")
        latest = (checkpoints.get("latest") or {}).get("completed") or {}
        sample = {"t_s": round(time.monotonic() - started), "rss_mb": round(tm_rss_mb(), 1),
                  "lag_frames": produced - done, "produced": produced,
                  "checkpoints": checkpoints["counts"]["completed"],
                  "failed_checkpoints": checkpoints["counts"]["failed"],
                  "last_checkpoint_ms": latest.get("end_to_end_duration"),
                  "state_mb": round((latest.get("state_size") or 0) / 2**20, 2)}
        samples.append(sample)
        print(f"[soak] {sample}", flush=True)
    stop.set()
    publisher.join(60)
    durations = [s["last_checkpoint_ms"] for s in samples if s["last_checkpoint_ms"] is not None]
    state, _ = job_state(flink)
    flink._run(["bash", str(flink.flink_home() / "bin" / "flink"), "cancel", "-m",
                "localhost:8081", jid], check=False)
    flink.stop_cluster()
    committed.close()
    # memory trend: the first minute is warm-up (models load, JIT), compare after it
    settled = [s["rss_mb"] for s in samples if s["t_s"] >= 60]
    result = {"cameras": args.cameras, "fps_per_camera": args.fps, "minutes": args.minutes,
              "frames_sent": sum(tracker.next_offsets.values()),
              "rss_mb_start": settled[0] if settled else None,
              "rss_mb_end": settled[-1] if settled else None,
              "rss_mb_max": max(settled) if settled else None,
              "max_lag_frames": max(s["lag_frames"] for s in samples),
              "final_lag_frames": samples[-1]["lag_frames"],
              "checkpoints": samples[-1]["checkpoints"],
              "failed_checkpoints": samples[-1]["failed_checkpoints"],
              "checkpoint_ms_median": statistics.median(durations) if durations else None,
              "checkpoint_ms_max": max(durations) if durations else None,
              "state_mb_end": samples[-1]["state_mb"]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
