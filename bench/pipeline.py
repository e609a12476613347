"""The whole pipeline under load: N virtual cameras at F fps through the real broker and the
real job, against a plain single-process loop over the same frames with the same models.

    python -m bench.pipeline [--cameras 41] [--fps 1] [--duration 60] [--warmup 20]
                             [--videos ../shared/data/video] [--find-max] [--parallelism 1]

Each camera replays a real video (every video file in --videos, cameras spread over them at
different offsets), sampled at F fps and paced in real time: capture_ms is the wall clock when
the frame is published, so latency = when the analysis reaches a consumer of the analyses topic
minus capture_ms (capture -> analysed -> in Kafka). Frames published during the warm-up are not
measured. CPU is the machine's busy share from /proc/stat; memory is the summed RSS of this
process tree (JobManager/TaskManager JVM and Python workers included) from /proc.

With a ``frame_store`` in the config (``--config bench/island.yaml``, what ``make bench`` uses,
or ``--set frame_store.url=file:///dev/shm/camflow-frames``) the publisher claim-checks like a
sampler would: JPEG into the store, reference into Kafka; the job reads the JPEG in ``analyse``.

Baseline (same invocation, same frames, same models, same config): a plain Python loop doing
decode -> detect -> track -> faces/plates once per track -> scene rules, one frame after the
other, no Kafka, no Flink. ``ratio_vs_baseline`` = job sustained fps / baseline fps.

The LAST line printed is one JSON object:
{"cameras", "fps_per_camera", "sustained_fps", "p99_latency_ms", "baseline_fps",
 "ratio_vs_baseline", "cpu_cores", ...}
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")


def camera_frames(videos: list[Path], cameras: int, fps: float, seconds: float,
                  max_width: int) -> dict[str, list[bytes]]:
    """JPEGs per virtual camera: ``seconds * fps`` samples of one video from its own offset."""
    from camflow.transforms.frames import encode_jpeg, resize_to_max_width
    per_camera = max(1, int(seconds * fps))
    cache: dict[Path, list[np.ndarray]] = {}
    out: dict[str, list[bytes]] = {}
    for c in range(cameras):
        video = videos[c % len(videos)]
        if video not in cache:  # every video sampled once at fps; cameras start at offsets
            capture = cv2.VideoCapture(str(video))
            native = capture.get(cv2.CAP_PROP_FPS) or 25.0
            step = max(1, int(round(native / fps)))
            images, index = [], 0
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                if index % step == 0:
                    images.append(resize_to_max_width(image, max_width))
                index += 1
            capture.release()
            cache[video] = images
        images = cache[video]
        offset = (c // len(videos)) * 7 % max(1, len(images))
        jpegs = [encode_jpeg(images[(offset + i) % len(images)], 85) for i in range(per_camera)]
        out[f"bench-cam-{c:03d}"] = jpegs
    return out


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``job.motion_gate.enabled=false`` style settings (values parsed as YAML)."""
    import yaml
    for item in overrides:
        path, _, value = item.partition("=")
        node = raw
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(value)
    return raw


def bench_config(cameras: list[str], kafka_bootstrap: str, parallelism: int, base=None,
                 overrides: list[str] = ()):
    from camflow.config import Config
    suffix = uuid.uuid4().hex[:8]
    names = ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
             "watchlist_audit", "sightings")
    raw = apply_overrides(base.model_dump(mode="json") if base is not None else {}, overrides)
    raw["deployment"] = f"bench-{suffix}"
    raw["cameras"] = [{"id": c, "crowd_limit": 12} for c in cameras]
    raw.setdefault("kafka", {})
    raw["kafka"]["bootstrap_servers"] = kafka_bootstrap
    raw["kafka"]["group_id"] = f"bench-{suffix}"
    raw["kafka"]["topics"] = {**{n: f"bench-{n}-{suffix}" for n in names},
                              "partitions": max(2, parallelism)}
    raw.setdefault("job", {})["parallelism"] = parallelism
    raw["job"].pop("checkpoint_dir", None)
    return Config.model_validate(raw)


def run_baseline(config, frames: dict[str, list[bytes]], limit_s: float) -> dict:
    """Plain loop, one process: the job's own per-camera step and models, without Flink."""
    from camflow.core import perception
    from camflow.transforms import frames as frame_checks
    from camflow.transforms.camera_analysis import CameraState
    step = perception.camera_analysis(config)
    states = {c: CameraState() for c in frames}
    order = [(i, c) for i in range(max(len(v) for v in frames.values())) for c in frames
             if i < len(frames[c])]
    started, done = time.monotonic(), 0
    now = int(time.time() * 1000)
    for i, camera in order:
        jpeg = frames[camera][i]
        record = {"camera_id": camera, "capture_ms": now + i * 1000, "sequence": i, "jpeg": jpeg,
                  "jpeg_ref": None, "width": 0, "height": 0, "sampler_id": "bench"}
        analysis = frame_checks.validate(record, now_ms=record["capture_ms"])
        states[camera] = step.frame(states[camera], analysis, watermark_ms=None).state
        done += 1
        if time.monotonic() - started > limit_s:
            break
    seconds = time.monotonic() - started
    return {"frames": done, "seconds": round(seconds, 2), "fps": round(done / seconds, 2)}


from camflow.jobs.environment import child_env
from bench.chaos import task_manager_pids, tree_rss_mb  # noqa: E402 (one /proc walker for all benches)


class ProcSampler(threading.Thread):
    """Machine CPU busy share and this process tree's RSS, sampled every second."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float, float]] = []
        self.stop = threading.Event()

    @staticmethod
    def _cpu() -> tuple[int, int]:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]

    def run(self):
        last = self._cpu()
        while not self.stop.wait(1.0):
            now = self._cpu()
            busy = 1 - (now[1] - last[1]) / max(1, now[0] - last[0])
            last = now
            # the standalone cluster's TaskManagers (and their Python workers) are not our
            # children: count them too
            self.samples.append((time.monotonic(), busy,
                                 tree_rss_mb([os.getpid(), *task_manager_pids()])))


# Which part of the deployment a process is, by its command line (first match wins).
PROCESS_ROLES = (("pyflink.fn_execution", "python_workers"), ("TaskManagerRunner", "taskmanager_jvms"),
                 ("StandaloneSessionClusterEntrypoint", "jobmanager_jvm"), ("tansu", "broker"),
                 ("bench.pipeline", "bench_driver"))


def cpu_ticks_by_role() -> dict[str, int]:
    """CPU ticks (user + system) used so far by the processes of each role, from /proc."""
    ticks: dict[str, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        role = next((name for key, name in PROCESS_ROLES if key in cmdline), "other")
        ticks[role] = ticks.get(role, 0) + int(fields[11]) + int(fields[12])
    return ticks


def cores_by_role(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    """Cores each role used between two ``cpu_ticks_by_role`` readings. In the embedded
    mini-cluster the JVM and its Python operators run inside the bench driver."""
    hz = os.sysconf("SC_CLK_TCK")
    return {role: round(max(0, after.get(role, 0) - before.get(role, 0)) / hz / seconds, 2)
            for role in sorted(after)}


def start_job(config, cluster: bool):
    """The job on the embedded mini-cluster, or submitted to a fresh local standalone cluster
    with one TaskManager (one slot, one Python worker process) per parallel instance. Returns
    a function that cancels it (and stops that cluster)."""
    if not cluster:
        from camflow.jobs.camera_job import start
        client = start(config)
        return lambda: client.cancel().result()
    import subprocess
    import tempfile

    import yaml

    from camflow.infra import flink
    from bench.chaos import job_state, wait_running
    flink.stop_cluster()
    flink.start_cluster(taskmanagers=config.job.parallelism, slots=1)
    path = Path(tempfile.mkdtemp(prefix="camflow-bench-")) / "bench.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    done = subprocess.run([sys.executable, "-m", "camflow.commands", "job", "submit", "--config", str(path)],
                          capture_output=True, text=True, cwd=REPO, env=child_env())
    if done.returncode != 0:
        raise RuntimeError(f"submit failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    wait_running(flink, task_managers=config.job.parallelism)

    def cancel():
        jid, _ = job_state(flink)
        if jid:
            flink._run(["bash", str(flink.flink_home() / "bin" / "flink"), "cancel", "-m",
                        f"localhost:{flink.DEFAULT_REST_PORT}", jid], check=False)
        flink.stop_cluster()
    return cancel


def run_job(config, frames: dict[str, list[bytes]], fps: float, warmup_s: float,
            duration_s: float, cluster: bool = False) -> dict:
    """Publish in real time, consume analyses, measure after the warm-up."""
    from confluent_kafka import Consumer, TopicPartition

    from camflow.core.frame_store import FileFrameStore, configured_store
    from camflow.core.kafka import DeliveryTracker, ensure_topic, produce_reliably, reliable_producer
    from camflow.schemas.codec import AvroCodec

    topics = config.kafka.topics
    for name in ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
                 "watchlist_audit", "sightings"):
        ensure_topic(config.kafka, getattr(topics, name), topics.partitions)
    cancel_job = start_job(config, cluster)
    received: list[tuple[float, int, int]] = []  # (arrival wall ms, capture ms, processed ms)
    warmed_up: set[str] = set()  # cameras whose first (unmeasured) frame was analysed
    stop = threading.Event()

    def consume():
        consumer = Consumer({**config.kafka.client_conf(), "group.id": f"{config.kafka.group_id}-m",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(topics.analyses, p, 0) for p in range(topics.partitions)])
        codec = AvroCodec("FrameAnalysis")
        while not stop.is_set():
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error():
                    continue
                record = codec.decode(msg.value())
                if record["sequence"] < 0:  # a camera's first frame: the job is up
                    warmed_up.add(record["camera_id"])
                    continue
                received.append((time.time() * 1000, record["capture_ms"], record["processed_ms"]))
        consumer.close()

    consumer_thread = threading.Thread(target=consume, daemon=True)
    consumer_thread.start()
    sampler = ProcSampler()
    sampler.start()
    codec, producer, tracker = AvroCodec("FrameSample"), reliable_producer(config.kafka), DeliveryTracker()
    # With a frame store the publisher does what a claim-checking sampler does: JPEG into the
    # store, reference into Kafka (``--set frame_store.url=file:///dev/shm/camflow-frames``).
    store = configured_store(config)
    cameras = list(frames)

    def publish(camera: str, capture_ms: int, sequence: int, jpeg: bytes) -> None:
        ref = None
        if store is not None:
            jpeg, ref = None, store.put(camera, capture_ms, sequence, jpeg)
        value = codec.encode({"camera_id": camera, "capture_ms": capture_ms, "sequence": sequence,
                              "jpeg": jpeg, "jpeg_ref": ref, "width": 0, "height": 0,
                              "sampler_id": "bench"})
        produce_reliably(producer, topics.frames, value, camera.encode(), capture_ms, tracker)

    # The clock starts once the job analyses: a first frame per camera (sequence -1, never
    # measured) must come out first, so that start-up (cluster, model loading) is not a
    # backlog that the warm-up and the measured window then pay for.
    started = time.monotonic()
    for c in cameras:
        publish(c, int(time.time() * 1000), -1, frames[c][0])
    producer.flush(30)
    while len(warmed_up) < len(cameras) and time.monotonic() - started < 300:
        time.sleep(0.5)
    print(f"[bench] job analysing after {time.monotonic() - started:.1f} s", flush=True)
    t0 = time.monotonic() + 1.0
    measure_from_ms = int(time.time() * 1000 + (1.0 + warmup_s) * 1000)
    total_s = warmup_s + duration_s
    published = tick = 0
    cpu_before = None  # per-role CPU over the measured window: where the cores go
    while True:
        due = t0 + tick / fps
        if due - t0 > total_s:
            break
        if cpu_before is None and due - t0 >= warmup_s:
            cpu_before, cpu_from = cpu_ticks_by_role(), time.monotonic()
        time.sleep(max(0.0, due - time.monotonic()))
        capture_ms = int(time.time() * 1000)
        for c in cameras:  # all cameras capture on the same tick, like synchronised NVR pulls
            publish(c, capture_ms, tick, frames[c][tick % len(frames[c])])
            published += 1
        producer.poll(0)
        tick += 1
    producer.flush(60)
    end_ms = int(time.time() * 1000)
    cores = cores_by_role(cpu_before or {}, cpu_ticks_by_role(),
                          time.monotonic() - cpu_from) if cpu_before else {}
    time.sleep(8)  # let the tail of the measured frames arrive (still counted by capture time)
    stop.set()
    consumer_thread.join(5)
    sampler.stop.set()
    cancel_job()
    if isinstance(store, FileFrameStore):
        store.prune(end_ms + 1)  # this run's frames

    # Throughput: analyses that reached the consumer during the measured window (under
    # overload the frames captured then are still queued, so count arrivals, not captures).
    measured = [r for r in received if measure_from_ms <= r[0] < end_ms]
    expected = int(duration_s * fps) * len(cameras)
    latencies = sorted(r[0] - r[1] for r in measured)
    window_s = (end_ms - measure_from_ms) / 1000
    pct = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None
    cpu = [s[1] for s in sampler.samples]
    rss = [s[2] for s in sampler.samples]
    return {
        "published": published, "analysed_total": len(received),
        "measured_frames": len(measured), "expected_frames": expected,
        "backlog_at_end": published - len(received),
        "sustained_fps": round(len(measured) / window_s, 2) if window_s > 0 else 0.0,
        "p50_latency_ms": pct(0.50), "p95_latency_ms": pct(0.95), "p99_latency_ms": pct(0.99),
        "job_emit_p50_ms": round(statistics.median(r[2] - r[1] for r in measured), 1) if measured else None,
        "cpu_busy_mean": round(statistics.mean(cpu), 3) if cpu else None,
        "cores_by_role": cores,
        "rss_mb_start": round(rss[0], 1) if rss else None, "rss_mb_end": round(rss[-1], 1) if rss else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=41)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "data" / "video"))
    parser.add_argument("--config", help="deployment YAML whose job settings to use")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--cluster", action="store_true", help=(
        "run the job on a local standalone cluster with --parallelism TaskManagers (one slot "
        "and one Python worker each) instead of the embedded mini-cluster, whose Python "
        "operators share the client's interpreter"))
    parser.add_argument("--baseline-seconds", type=float, default=45.0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. job.motion_gate.enabled=false (repeatable)")
    parser.add_argument("--find-max", action="store_true",  # trials: --warmup, then <= 30 s
                        help="also search the most cameras that keep p99 < 2 s (shorter runs)")
    args = parser.parse_args(argv)

    from camflow.config import load_config
    from camflow.infra import broker
    videos = sorted(p for p in Path(args.videos).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise SystemExit(f"no videos in {args.videos}")
    bootstrap = broker.start()
    base = load_config(args.config) if args.config else None
    names = [f"bench-cam-{c:03d}" for c in range(args.cameras)]
    config = bench_config(names, bootstrap, args.parallelism, base, args.set)
    seconds = args.warmup + args.duration
    frames = camera_frames(videos, args.cameras, args.fps, seconds, max_width=960)
    print(f"[bench] {args.cameras} cameras x {args.fps} fps from {len(videos)} videos; "
          f"baseline first ({args.baseline_seconds:.0f} s cap)", flush=True)
    baseline = run_baseline(config, frames, args.baseline_seconds)
    print(f"[bench] baseline: {baseline}", flush=True)
    job = run_job(config, frames, args.fps, args.warmup, args.duration, args.cluster)
    print(f"[bench] job: {job}", flush=True)
    result = {"cameras": args.cameras, "fps_per_camera": args.fps,
              "sustained_fps": job["sustained_fps"], "p99_latency_ms": job["p99_latency_ms"],
              "baseline_fps": baseline["fps"],
              "ratio_vs_baseline": round(job["sustained_fps"] / baseline["fps"], 3) if baseline["fps"] else None,
              "cpu_cores": os.cpu_count(), "p50_latency_ms": job["p50_latency_ms"],
              "p95_latency_ms": job["p95_latency_ms"], "offered_fps": args.cameras * args.fps,
              "measured_frames": job["measured_frames"], "expected_frames": job["expected_frames"],
              "backlog_at_end": job["backlog_at_end"],
              "cpu_busy_mean": job["cpu_busy_mean"], "cores_by_role": job["cores_by_role"],
              "rss_mb_start": job["rss_mb_start"],
              "rss_mb_end": job["rss_mb_end"], "parallelism": args.parallelism,
              "runner": "standalone cluster" if args.cluster else "mini-cluster",
              "overrides": args.set}
    if args.find_max:
        low, high, best = 1, args.cameras, 0
        while low <= high:
            n = (low + high) // 2
            trial_names = [f"bench-cam-{c:03d}" for c in range(n)]
            trial = run_job(bench_config(trial_names, bootstrap, args.parallelism, base, args.set),
                            {c: frames[c] for c in trial_names}, args.fps, args.warmup,
                            min(args.duration, 30.0), args.cluster)
            ok = trial["p99_latency_ms"] is not None and trial["p99_latency_ms"] < 2000 \
                and trial["measured_frames"] >= 0.95 * trial["expected_frames"]
            print(f"[bench] find-max: {n} cameras -> p99 {trial['p99_latency_ms']} ms, "
                  f"{trial['sustained_fps']} fps: {'ok' if ok else 'too many'}", flush=True)
            best, low, high = (n, n + 1, high) if ok else (best, low, n - 1)
        result["max_cameras_p99_under_2s"] = best
    print(json.dumps(result), flush=True)
    os._exit(0)  # the embedded JVM's teardown can abort the interpreter after a cancelled job


if __name__ == "__main__":
    sys.exit(main())
