"""The samplers' own CPU: what `camflow ingest` costs per sampled frame, and for a fleet.

    python -m bench.samplers [--videos ../shared/data/video] [--fps 1]
                             [--cameras 41] [--layout threads|processes|both]
                             [--samplers legacy current ...] [--duration 45] [--warmup 15]
                             [--skip-compare] [--skip-cameras]
    (or `make bench-samplers SAMPLER_BENCH_ARGS=...`)

1. compare (one process, no broker): every video in --videos sampled at --fps by the sampler
   before issue 17 (``read()`` of every frame, "before") and by today's ``sample_file``
   (``grab()`` every frame, ``retrieve()`` only sampled ones, "after"), alternately,
   --repeats times; CPU seconds of the process (decoder threads included) per sampled frame,
   median per video, and the ratio after/before. "after_1thread": the same with one decoder
   thread (``decode_threads=1``; OpenCV's default is one per core). Resizing to 960 px and
   JPEG encoding, which all do alike, are timed apart ("encode").
2. cameras: N cameras (--cameras, default 41) = the videos replayed in real time (as a live
   camera delivers them: ``ingest(..., realtime=True)``, restarted when a video ends), each at
   --fps, published with the real sampler (``camflow.services.sampler.ingest``: resize, JPEG,
   Avro, idempotent acks=all producer) to a Tansu broker of the bench's own (memory, port
   --broker-port; --bootstrap uses another). Layout "threads": one process with N cameras (one
   thread each; the default: measured cheaper, bench/README.md); "processes": N processes of one
   camera each. After --warmup s, CPU of the sampler processes (``getrusage`` in each: every
   thread, librdkafka's included) and of the broker over --duration s: cores used and CPU ms
   per sampled frame; RSS of the samplers.
   --samplers says which samplers run the fleet, one after the other in this invocation (the
   same broker, the same layout): current (today's), current-1thread (``decode_threads=1``),
   legacy (the "before" one); e.g. ``--samplers legacy current legacy current``.

The LAST line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")
CAMERA_PREFIX = "samp"


def _cpu_s() -> float:
    """CPU seconds of this process so far, every thread included."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def legacy_sample_file(source: str, fps: float, start_ms: int | None = None,
                       realtime: bool = False, max_frames: int | None = None, **_ignored):
    """The file sampler before issue 17 (``read()`` of every frame, index-based times), kept
    here as the benchmark's baseline."""
    import cv2

    from camflow.services.sampler import SampledFrame, open_capture
    capture = open_capture(source)
    native_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    if start_ms is None:
        duration_ms = capture.get(cv2.CAP_PROP_FRAME_COUNT) * 1000.0 / native_fps
        start_ms = int(time.time() * 1000 - (0 if realtime else duration_ms))
    step_ms = 1000.0 / fps
    next_pos_ms = 0.0
    wall_start = time.monotonic()
    emitted = index = 0
    try:
        while max_frames is None or emitted < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            pos_ms = index * 1000.0 / native_fps
            if pos_ms + 1e-6 >= next_pos_ms:
                next_pos_ms += step_ms
                if realtime:
                    time.sleep(max(0.0, pos_ms / 1000.0 - (time.monotonic() - wall_start)))
                yield SampledFrame(start_ms + int(round(pos_ms)), index, image)
                emitted += 1
            index += 1
    finally:
        capture.release()


def _videos(folder: str) -> list[Path]:
    videos = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise SystemExit(f"no videos in {folder}")
    return videos


# ------------------------------------------------------------------ 1. before / after
def compare(videos: list[Path], fps: float, repeats: int, max_width: int) -> dict:
    from camflow.services.sampler import sample_file
    from camflow.transforms.frames import encode_jpeg, resize_to_max_width

    samplers = {"before": legacy_sample_file, "after": sample_file,
                "after_1thread": lambda *a, **k: sample_file(*a, decode_threads=1, **k)}
    names = list(samplers)
    out: dict = {"fps": fps, "repeats": repeats, "videos": {}}
    totals = {name: [0.0, 0] for name in [*names, "encode"]}
    for video in videos:
        runs: dict[str, list[float]] = {name: [] for name in totals}
        frames = {}
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
                t0 = _cpu_s()
                sampled = [f.image for f in samplers[name](str(video), fps, start_ms=0)]
                runs[name].append((_cpu_s() - t0) / len(sampled) * 1000)
                frames[name] = len(sampled)
            t0 = _cpu_s()
            for image in sampled:
                encode_jpeg(resize_to_max_width(image, max_width), 85)
            runs["encode"].append((_cpu_s() - t0) / len(sampled) * 1000)
        assert len(set(frames.values())) == 1, (video, frames)
        row = {k: round(statistics.median(v), 2) for k, v in runs.items()}
        row["sampled_frames"] = frames["after"]
        row["ratio_after_vs_before"] = round(row["after"] / row["before"], 3)
        out["videos"][video.name] = row
        for k in totals:
            totals[k][0] += row[k] * frames["after"]
            totals[k][1] += frames["after"]
        print(f"[samplers] {video.name:<34} {frames['after']:>4} frames: decode before "
              f"{row['before']:6.2f} ms, after {row['after']:6.2f} ms CPU/sampled frame "
              f"(x{row['ratio_after_vs_before']}), 1 decoder thread {row['after_1thread']:6.2f} ms; "
              f"resize+JPEG {row['encode']:.2f} ms", flush=True)
    mean = {k: round(v[0] / v[1], 2) for k, v in totals.items()}
    out.update({"before_ms_per_frame": mean["before"], "after_ms_per_frame": mean["after"],
                "after_1thread_ms_per_frame": mean["after_1thread"],
                "encode_ms_per_frame": mean["encode"],
                "ratio_1thread_vs_before": round(mean["after_1thread"] / mean["before"], 3),
                "ratio_after_vs_before": round(mean["after"] / mean["before"], 3),
                "ratio_with_encode": round((mean["after"] + mean["encode"])
                                           / (mean["before"] + mean["encode"]), 3)})
    print(f"[samplers] all videos: before {mean['before']} ms, after {mean['after']} ms CPU per "
          f"sampled frame (x{out['ratio_after_vs_before']}); with resize+JPEG "
          f"x{out['ratio_with_encode']}; 1 decoder thread {mean['after_1thread']} ms "
          f"(x{out['ratio_1thread_vs_before']})", flush=True)
    return out


# ------------------------------------------------------------------ 2. N cameras
def worker(spec: dict) -> None:
    """Cameras of one sampler process; waits for the start line on stdin, prints one JSON
    line with its CPU and frames over the measured window, then exits."""
    from prometheus_client import REGISTRY

    from camflow.config import Kafka
    from camflow.services import sampler
    if spec["sampler"] == "legacy":
        sampler.sample_file = legacy_sample_file
    decode_threads = 1 if spec["sampler"] == "current-1thread" else None
    kafka = Kafka(bootstrap_servers=spec["bootstrap"], topics={"frames": spec["topic"]})
    print("ready", flush=True)
    times = json.loads(sys.stdin.readline())
    start, warm, end = times["start"], times["warm"], times["end"]
    errors: list[str] = []

    def camera(camera_id: str, video: str, delay: float) -> None:
        time.sleep(max(0.0, start + delay - time.time()))
        while time.time() < end:
            remaining = int((end - time.time()) * spec["fps"]) + 1
            try:
                sampler.ingest(kafka, camera_id, video, spec["fps"], realtime=True,
                               max_frames=remaining, progress=False, max_width=spec["max_width"],
                               decode_threads=decode_threads)
            except Exception as exc:  # noqa: BLE001 (reported, the others go on)
                errors.append(f"{camera_id}: {exc}")
                return

    cameras = spec["cameras"]
    for i, (camera_id, video) in enumerate(cameras):
        delay = (spec["first_index"] + i) / spec["total"]  # cameras start spread over 1 s
        threading.Thread(target=camera, args=(camera_id, video, delay), daemon=True).start()

    def count(name: str) -> float:
        return sum(REGISTRY.get_sample_value(name, {"camera": c}) or 0.0 for c, _ in cameras)

    time.sleep(max(0.0, warm - time.time()))
    cpu0, sent0, acked0 = _cpu_s(), count("camflow_sampler_frames_published_total"), \
        count("camflow_sampler_frames_acknowledged_total")
    time.sleep(max(0.0, end - time.time()))
    cpu1, sent1, acked1 = _cpu_s(), count("camflow_sampler_frames_published_total"), \
        count("camflow_sampler_frames_acknowledged_total")
    rss_kb = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmRSS")))
    print(json.dumps({"cpu_s": cpu1 - cpu0, "frames": sent1 - sent0, "acked": acked1 - acked0,
                      "rss_mb": rss_kb / 1024, "errors": errors[:3]}), flush=True)
    os._exit(0)


def _proc_cpu_s(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fleet(videos: list[Path], cameras: int, layout: str, fps: float, warmup: float,
          duration: float, bootstrap: str, broker_pid: int | None, sampler_name: str,
          max_width: int) -> dict:
    import uuid

    from camflow.infra.broker import ensure_topics
    topic = f"bench-samplers-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {topic: 4})
    assigned = [(f"{CAMERA_PREFIX}-{c:03d}", str(videos[c % len(videos)])) for c in range(cameras)]
    groups = [assigned] if layout == "threads" else [[a] for a in assigned]
    procs, first = [], 0
    for group in groups:
        spec = {"bootstrap": bootstrap, "topic": topic, "fps": fps, "cameras": group,
                "first_index": first, "total": cameras, "sampler": sampler_name,
                "max_width": max_width}
        first += len(group)
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.samplers", "--worker",
                                       json.dumps(spec)], cwd=REPO, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True))
    t0 = time.monotonic()
    for p in procs:  # imports done, producers not yet made
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"sampler worker did not start: {line!r}")
    print(f"[samplers] {layout}: {len(procs)} process(es) ready after "
          f"{time.monotonic() - t0:.1f} s", flush=True)
    start = time.time() + 1.0
    times = {"start": start, "warm": start + warmup, "end": start + warmup + duration}
    for p in procs:
        p.stdin.write(json.dumps(times) + "\n")
        p.stdin.flush()
    time.sleep(max(0.0, times["warm"] - time.time()))
    broker0 = _proc_cpu_s(broker_pid)
    time.sleep(max(0.0, times["end"] - time.time()))
    broker1 = _proc_cpu_s(broker_pid)
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        results.append(json.loads(out.strip().splitlines()[-1]))
    cpu = sum(r["cpu_s"] for r in results)
    frames = sum(r["frames"] for r in results)
    row = {"layout": layout, "sampler": sampler_name, "cameras": cameras, "processes": len(procs),
           "fps_per_camera": fps, "seconds": duration, "frames": int(frames),
           "acked": int(sum(r["acked"] for r in results)),
           "offered_frames": int(cameras * fps * duration),
           "cpu_s": round(cpu, 2), "cores": round(cpu / duration, 3),
           "cpu_ms_per_frame": round(cpu / frames * 1000, 2) if frames else None,
           "broker_cores": round((broker1 - broker0) / duration, 3) if broker_pid else None,
           "rss_mb": round(sum(r["rss_mb"] for r in results), 1),
           "errors": [e for r in results for e in r["errors"]][:5]}
    print(f"[samplers] {layout} ({sampler_name}): {cameras} cameras in {len(procs)} process(es): "
          f"{row['frames']} frames of {row['offered_frames']} offered in {duration:.0f} s, "
          f"{row['cores']} cores, {row['cpu_ms_per_frame']} ms CPU per frame, broker "
          f"{row['broker_cores']} cores, RSS {row['rss_mb']} MB", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "data" / "video"))
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-width", type=int, default=960)
    parser.add_argument("--cameras", type=int, default=41)
    parser.add_argument("--layout", choices=["threads", "processes", "both"], default="threads")
    parser.add_argument("--samplers", nargs="+", default=["legacy", "current"],
                        choices=["current", "current-1thread", "legacy"])
    parser.add_argument("--duration", type=float, default=45.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--broker-port", type=int, default=19392,
                        help="port of the bench's own in-memory broker (stopped after)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--skip-cameras", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0

    videos = _videos(args.videos)
    summary: dict = {"bench": "samplers", "cpu_count": os.cpu_count(),
                     "machine": platform.machine(), "videos": [v.name for v in videos]}
    if not args.skip_compare:
        summary["compare"] = compare(videos, args.fps, args.repeats, args.max_width)
    if not args.skip_cameras:
        from camflow.infra import broker
        own = args.bootstrap is None
        bootstrap = args.bootstrap or broker.start(port=args.broker_port)
        pid = broker.status(port=args.broker_port)["pid"] if own else None
        summary["publisher"] = (f"own in-memory Tansu broker {bootstrap} (acks=all, idempotent)"
                                if own else f"broker {bootstrap}")
        layouts = ["threads", "processes"] if args.layout == "both" else [args.layout]
        try:
            summary["cameras"] = [fleet(videos, args.cameras, layout, args.fps, args.warmup,
                                        args.duration, bootstrap, pid, name, args.max_width)
                                  for layout in layouts for name in args.samplers]
        finally:
            if own:
                broker.stop(port=args.broker_port)
    summary["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
