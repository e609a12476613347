"""``make chaos``: kill TaskManagers and the whole job while it works; prove nothing is lost.

On the local standalone cluster (JobManager + 2 TaskManagers, parallelism 2):
1. the analyst-store sink runs as its own process; the job is submitted (unbounded,
   checkpoints every 2 s, retained);
2. two live cameras (real videos, looped) publish frames in real time at ``fps`` for the whole
   run, as cameras do: event time only moves on while frames arrive, so windows close only
   behind newer frames (with every frame published up front, a job restored after it had read
   them all would never see its watermark move again);
3. ``kills`` times, at random moments, one TaskManager is killed (its JVM and its Python
   workers, SIGKILL); Flink fails over, and the TaskManager is started again;
4. right after the recovered job completes its first checkpoint, the whole job is cancelled
   and submitted again from the latest retained checkpoint (that one: it holds windows filled
   from what the failover re-read, not yet closed); the cameras go on for a while, then stop;
5. once every frame is in the store (or the time is up) the store is compared with what was
   sent (read back from the frames topic): one analysis per (camera, sequence), every window
   the final watermark must have closed aggregated, every crowd alert those windows imply
   present, no alert id twice.

The LAST line printed is JSON:
{"frames_sent", "analysed", "lost", "duplicate_alerts_in_store", "restarts", ...}
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from camflow.jobs.environment import child_env

REPO = Path(__file__).resolve().parent.parent
TASK_MANAGER_MAIN = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def task_manager_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", TASK_MANAGER_MAIN], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def process_tree(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def tree_rss_mb(roots: list[int]) -> float:
    """Resident memory of ``roots`` and every process under them, in MB (from /proc)."""
    total = 0
    for root in roots:
        for pid in process_tree(root):
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
    return total / 1024


def kill_task_manager(rng: random.Random) -> int:
    """SIGKILL one TaskManager JVM and every process under it (the PyFlink Python workers)."""
    victim = rng.choice(task_manager_pids())
    for pid in process_tree(victim):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return victim


def job_state(flink) -> tuple[str | None, str | None]:
    try:
        jobs = flink.rest().get("/jobs/overview")["jobs"]
    except Exception:  # noqa: BLE001 - JobManager busy or restarting
        return None, None
    live = [j for j in jobs if j["state"] not in ("CANCELED", "FAILED", "FINISHED")]
    return (live[0]["jid"], live[0]["state"]) if live else (None, None)


def wait_running(flink, timeout: float = 180.0, task_managers: int = 2) -> str:
    """Until the job is RUNNING again with all its tasks deployed; returns its id.

    A TaskManager that died again meanwhile (or never came up) is started again: the job
    needs all ``task_managers`` slots. On timeout the error carries what the cluster says
    about the job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jid, state = job_state(flink)
        if jid and state == "RUNNING":
            try:
                vertices = flink.rest().get(f"/jobs/{jid}")["vertices"]
            except Exception:  # noqa: BLE001 - JobManager busy; ask again
                vertices = [{"status": "UNKNOWN"}]
            if all(v["status"] == "RUNNING" for v in vertices):
                return jid
        if len(task_manager_pids()) < task_managers:
            log("a TaskManager is missing; starting it again")
            ensure_task_managers(flink, task_managers)
        time.sleep(1)
    raise TimeoutError(f"job not running again within {timeout:.0f}s\n{cluster_report(flink)}")


def cluster_report(flink, log_lines: int = 30) -> str:
    """What the JobManager says about the job (state, vertices, latest exception), the
    TaskManagers it knows, and the tail of every Flink log: for a failure in CI."""
    lines = []
    try:
        for job in flink.rest().get("/jobs/overview")["jobs"]:
            lines.append(f"job {job['jid']} {job['state']}")
            detail = flink.rest().get(f"/jobs/{job['jid']}")
            lines += [f"  vertex {v['name'][:60]}: {v['status']}" for v in detail["vertices"]]
            exceptions = flink.rest().get(f"/jobs/{job['jid']}/exceptions")
            for entry in (exceptions.get("exceptionHistory", {}).get("entries") or [])[:3]:
                lines.append(f"  exception: {entry.get('exceptionName')} on "
                             f"{entry.get('taskName')}: {(entry.get('stacktrace') or '')[:800]}")
        for tm in flink.rest().get("/taskmanagers")["taskmanagers"]:
            lines.append(f"taskmanager {tm['id']} slots {tm['freeSlots']}/{tm['slotsNumber']} free")
    except Exception as exc:  # noqa: BLE001 - a report, best effort
        lines.append(f"(REST: {exc})")
    lines.append(f"TaskManager processes: {task_manager_pids()}")
    for path in sorted(flink.log_dir().glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-log_lines:]
        lines.append(f"--- {path.name} (last {len(tail)} lines)")
        lines += tail
    return "\n".join(lines)


def latest_completed_checkpoint(flink, jid: str) -> int:
    from camflow.services.status import checkpoint_summary
    try:
        last = checkpoint_summary(flink.rest().get(f"/jobs/{jid}/checkpoints"))["last"]
    except Exception:  # noqa: BLE001 - JobManager busy
        return -1
    return int(last["id"]) if last else -1


def wait_next_checkpoint(flink, jid: str, timeout: float = 60.0) -> int:
    """Until a checkpoint newer than the latest completed one completes; returns its id."""
    before = latest_completed_checkpoint(flink, jid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = latest_completed_checkpoint(flink, jid)
        if now > before:
            return now
        time.sleep(0.2)
    raise TimeoutError(f"no checkpoint completed within {timeout:.0f}s after checkpoint {before}")


def ensure_task_managers(flink, wanted: int = 2) -> None:
    while len(task_manager_pids()) < wanted:
        flink._run(["bash", str(flink.flink_home() / "bin" / "taskmanager.sh"), "start"])
        time.sleep(1)


def run_chaos(kills: int = 3, frames_per_camera: int = 120, fps: float = 4.0,
              timeout_s: float = 420.0, seed: int | None = None, work: Path | None = None) -> dict:
    from camflow.config import Config
    from camflow.infra import broker, flink
    from camflow.core.kafka import ensure_topic
    from camflow.services.store import AnalystStore
    from camflow.transforms.alerts import alert_id

    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    work = Path(work or REPO / "var" / "chaos" / run)
    work.mkdir(parents=True, exist_ok=True)
    bootstrap = broker.start()
    names = ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
             "watchlist_audit", "sightings")
    raw = {
        "deployment": f"chaos-{run}",
        "cameras": [{"id": "walkway", "crowd_limit": 4}, {"id": "hallway", "crowd_limit": 1}],
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"chaos-{run}",
                  "topics": {**{n: f"chaos-{n}-{run}" for n in names}, "partitions": 2}},
        "job": {"parallelism": 2, "checkpoint_interval_ms": 2000,
                "checkpoint_dir": (work / "checkpoints").as_uri(), "window_ms": 5000,
                "sliding_window_ms": 0, "out_of_orderness_ms": 1000,
                # longer than a failover's silence (restart + model loading): a subtask that
                # is merely recovering must not count as idle, or its camera's frames turn late
                "idleness_ms": 15000,
                "detector": {"threads": 1}, "recognition": {"faces": False, "plates": False}},
        "store": {"url": chaos_store(run)},
    }
    config = Config.model_validate(raw)
    config_path = work / "chaos.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    for n in names:
        ensure_topic(config.kafka, getattr(config.kafka.topics, n), 2)

    data = REPO.parent / "shared" / "data" / "video"
    videos = {"walkway": data / "vtest.avi", "hallway": data / "one-by-one-person-detection.mp4"}
    if not videos["walkway"].is_file():
        from camflow.commands.demo import demo_video
        videos = {"walkway": Path(demo_video()), "hallway": Path(demo_video())}
    cameras = [LiveCamera(config, camera, video, fps, frames_per_camera)
               for camera, video in videos.items()]

    flink.stop_cluster()
    flink.start_cluster(taskmanagers=2, slots=1)
    sink_log = open(work / "sink.log", "w")
    sink = subprocess.Popen([sys.executable, "-m", "camflow.commands", "sink", "--config", str(config_path)],
                            stdout=sink_log, stderr=subprocess.STDOUT, cwd=REPO, env=child_env())
    started = time.monotonic()
    restarts = 0
    try:
        submitted = subprocess.run([sys.executable, "-m", "camflow.commands", "job", "submit",
                                    "--config", str(config_path)], capture_output=True, text=True,
                                   cwd=REPO, env=child_env())
        if submitted.returncode != 0:
            raise RuntimeError(f"submit failed:\n{submitted.stdout[-2000:]}\n{submitted.stderr[-2000:]}")
        wait_running(flink)
        log("job running; cameras start")
        for camera in cameras:
            camera.start()
        for k in range(kills):
            time.sleep(rng.uniform(3.0, 8.0))
            victim = kill_task_manager(rng)
            restarts += 1
            log(f"kill {k + 1}/{kills}: TaskManager pid {victim} and its Python workers")
            time.sleep(3)
            ensure_task_managers(flink)
            wait_running(flink)
            log("failed over, running again")
        # The harshest moment for the whole-job restart: right after the first checkpoint the
        # recovered job completes (it holds what the failover re-read, windows not yet fired).
        jid, _ = job_state(flink)
        first = wait_next_checkpoint(flink, jid)
        log(f"checkpoint {first} completed after the failover")
        log(f"cancelling the whole job {jid}; checkpoints are retained")
        flink.rest().cancel(jid)
        while job_state(flink)[0] is not None:
            time.sleep(0.5)
        from camflow.jobs.camera_job import latest_checkpoint
        checkpoint = latest_checkpoint(config.job.checkpoint_dir)
        log(f"resubmitting from {checkpoint}")
        resubmitted = subprocess.run([sys.executable, "-m", "camflow.commands", "job", "submit", "--config",
                                      str(config_path), "--from-checkpoint", checkpoint],
                                     capture_output=True, text=True, cwd=REPO, env=child_env())
        if resubmitted.returncode != 0:
            raise RuntimeError(f"resubmit failed:\n{resubmitted.stderr[-2000:]}")
        restarts += 1
        wait_running(flink)
        # The cameras go on past the restart (and for at least their frames_per_camera), so
        # that event time moves past what was sent before the faults: long enough for a
        # source subtask without cameras to count as idle again and for two more windows.
        time.sleep((config.job.idleness_ms + 2 * config.job.window_ms) / 1000)
        for camera in cameras:
            camera.stop_and_wait()
        log(f"cameras stopped: {sum(c.sent for c in cameras)} frames published")
        sent, windows, captures = sent_frames(config)
        analysed = 0
        while time.monotonic() - started < timeout_s:
            time.sleep(3)
            analysed = _count(config.store.url, "SELECT COUNT(*) FROM frame_analyses")
            if analysed >= len(sent):
                # A subtask whose partition holds no camera holds the watermark back until it
                # counts as idle; then the windows close and the sink writes them: wait until
                # the aggregates in the store stop changing.
                time.sleep(config.job.idleness_ms / 1000)
                seen, stable_since = -1, time.monotonic()
                while time.monotonic() - stable_since < 10 and time.monotonic() - started < timeout_s:
                    time.sleep(2)
                    now_seen = _count(config.store.url, "SELECT COUNT(*) FROM aggregates")
                    if now_seen != seen:
                        seen, stable_since = now_seen, time.monotonic()
                break
        jid, _ = job_state(flink)
        if jid:
            flink.rest().cancel(jid)
        time.sleep(3)
    finally:
        for camera in cameras:
            camera.stopping.set()
        sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(20)
        except subprocess.TimeoutExpired:
            sink.kill()
        sink_log.close()
        flink.stop_cluster()

    store = AnalystStore(config.store.url)
    try:
        rows = store.query("SELECT camera_id, sequence FROM frame_analyses")
        analysed_keys = {(c, int(s)) for c, s in rows}
        alerts = store.query("SELECT alert_id FROM alerts")
        aggregates = {(c, int(w)) for c, w in store.query(
            "SELECT camera_id, window_start_ms FROM aggregates")}
        crowded = store.query("""SELECT a.camera_id, a.window_end_ms, c.max_in_frame
                                 FROM aggregates a JOIN aggregate_counts c USING
                                 (camera_id, window_start_ms, window_end_ms)
                                 WHERE c.class_name = 'person'""")
        redeliveries = store.query("SELECT COALESCE(SUM(deliveries - 1), 0) FROM frame_analyses")[0][0]
    finally:
        store.close()
    from camflow.core.kafka import read_topic
    from camflow.schemas.codec import AvroCodec
    late = sum(1 for m in read_topic(config.kafka, config.kafka.topics.dead_letters, idle_timeout_s=2)
               if AvroCodec("DeadLetter").decode(m.value())["reason"] == "late_for_window")
    limits = {c["id"]: c["crowd_limit"] for c in raw["cameras"]}
    expected_alerts = {alert_id("crowd_limit", cam, "person", int(end))
                       for cam, end, most in crowded if most > limits[cam]}
    present = {a for (a,) in alerts}
    # Which windows the job must have closed: a window fires once the watermark (the newest
    # capture time seen minus the allowed out-of-orderness) passes its end. Every source
    # subtask that holds a camera has seen at least that camera's newest frame, so the final
    # watermark is at least the oldest of the cameras' newest capture times minus the
    # out-of-orderness; windows ending after that may legitimately still be open.
    newest = min(max(t for c, t in captures if c == cam) for cam in limits)
    closable = newest - config.job.out_of_orderness_ms
    open_windows = {(c, w) for c, w in windows if w + config.job.window_ms > closable}
    return {
        "frames_sent": len(sent), "analysed": len(analysed_keys & sent),
        "lost": len(sent - analysed_keys), "duplicate_alerts_in_store": len(alerts) - len(present),
        "restarts": restarts, "taskmanager_kills": kills,
        "windows_expected": len(windows - open_windows),
        "windows_missing": len((windows - open_windows) - aggregates),
        "expected_crowd_alerts": len(expected_alerts),
        "missing_crowd_alerts": len(expected_alerts - present),
        "redelivered_analyses_absorbed": int(redeliveries),
        "late_for_window_dead_letters": late,
        "seconds": round(time.monotonic() - started, 1),
    }


class LiveCamera:
    """A camera in real time: the video's frames (looped) at ``fps``, capture time = now, each
    acknowledged before the next; at least ``min_frames`` before it honours a stop."""

    def __init__(self, config, camera_id: str, video: Path, fps: float, min_frames: int):
        import threading

        import cv2

        from camflow.transforms.frames import resize_to_max_width
        self.config, self.camera_id, self.fps, self.min_frames = config, camera_id, fps, min_frames
        capture, images = cv2.VideoCapture(str(video)), []
        step = max(1, int(round((capture.get(cv2.CAP_PROP_FPS) or 25.0) / fps)))
        index = 0
        while len(images) < 400:
            ok, image = capture.read()
            if not ok:
                break
            if index % step == 0:
                images.append(resize_to_max_width(image, 640))
            index += 1
        capture.release()
        if not images:
            raise RuntimeError(f"{video}: no frames")
        self.images, self.sent, self.error = images, 0, None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        from camflow.services.publish import FramePublisher
        from camflow.transforms.frames import encode_jpeg
        publisher = FramePublisher(self.config, "chaos")
        jpegs = [encode_jpeg(image, 85) for image in self.images]
        started = time.monotonic()
        try:
            while self.sent < self.min_frames or not self.stopping.is_set():
                time.sleep(max(0.0, started + self.sent / self.fps - time.monotonic()))
                i = self.sent % len(self.images)
                publisher.publish(self.camera_id, self.images[i], [(self.sent, int(time.time() * 1000))],
                                  jpeg=jpegs[i])
                self.sent += 1
        except Exception as exc:  # noqa: BLE001 - reported by stop_and_wait
            self.error = exc

    def stop_and_wait(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()
        if self.error is not None:
            raise RuntimeError(f"camera {self.camera_id}: {self.error}") from self.error


def sent_frames(config) -> tuple[set, set, set]:
    """What the cameras sent, read back: (camera, sequence), (camera, window start) and
    (camera, capture time)."""
    from camflow.core.kafka import read_topic
    from camflow.schemas.codec import AvroCodec
    sent, windows, captures = set(), set(), set()
    width = config.job.window_ms
    for msg in read_topic(config.kafka, config.kafka.topics.frames, idle_timeout_s=2):
        frame = AvroCodec("FrameSample").decode(msg.value())
        sent.add((frame["camera_id"], frame["sequence"]))
        captures.add((frame["camera_id"], frame["capture_ms"]))
        windows.add((frame["camera_id"], frame["capture_ms"] // width * width))
    return sent, windows, captures


def _count(url: str, sql: str) -> int:
    from camflow.services.store import AnalystStore
    store = AnalystStore(url)
    try:
        return int(store.query(sql)[0][0])
    finally:
        store.close()


def chaos_store(run: str, base: str = "postgresql://postgres@127.0.0.1:5432/camflow") -> str:
    """A fresh PostgreSQL schema: the sink writes while this harness reads (DuckDB would lock)."""
    import psycopg
    schema = f"chaos_{run}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    return f"{base}?options=-csearch_path%3D{schema}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--frames-per-camera", type=int, default=120)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=420.0)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    result = run_chaos(args.kills, args.frames_per_camera, args.fps, args.timeout, args.seed)
    print(json.dumps(result))
    ok = all(result[k] == 0 for k in ("lost", "duplicate_alerts_in_store", "windows_missing",
                                      "missing_crowd_alerts"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
