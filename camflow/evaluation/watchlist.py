"""End-to-end accuracy and latency of watchlist face alerts (``camflow eval watchlist``).

Unlike ``eval faces`` (which scores embeddings offline), this runs the real streaming job:

1. ``labels.csv`` (``file, person_id, multi_face``; only ``multi_face == 0`` rows, ``file``
   relative to the images folder): the first photo of every person with at least two photos
   is enrolled on a fresh watchlist (unique topics per run).  People with one photo are not
   enrolled: their clip is the false-alarm test.
2. The unbounded job is started on the embedded mini-cluster for one camera ``eval-cam``
   (the given config's ``job`` settings, watchlist thresholds included; plates off).  Once it
   runs and has analysed a warm-up frame, every other photo is published as a "clip": the same
   frame ``frames`` times, ``step_ms`` apart in capture time, paced in wall time.  Clips are
   spaced in capture time by more than the watchlist cooldown and the tracker's max age, so
   every clip is an independent trial (a new track, no cooldown carried over).
3. The alerts topic is read while publishing (arrival wall time per alert) until every frame
   was analysed and the alerts settled, or nothing arrived for ``idle_timeout_s``.  An alert
   belongs to the clip whose capture-time span holds its ``time_ms`` (the confirming frame).

Scores per query clip: ``true_alerts`` (clip of an enrolled person with an alert naming them),
``wrong_person`` (clip with an alert naming someone else), ``missed`` (clip of an enrolled
person with no alert naming them), ``false_alerts_on_unenrolled`` (clip of a non-enrolled
person with any watchlist alert).  ``p50_latency_ms``: alert arrival at a consumer minus the
publish time of the confirming frame.  The job is always cancelled at the end; the topics are
left in place.
"""
from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np

from camflow.config import Config, load_config

CAMERA = "eval-cam"
TOPIC_FIELDS = ("frames", "analyses", "alerts", "aggregates", "dead_letters", "watchlist",
                "watchlist_audit", "sightings")


def _now_ms() -> int:
    return int(time.time() * 1000)


def eval_config(base: Config, suffix: str, bootstrap: str | None = None) -> Config:
    """The job config of one eval run: ``base``'s job settings (watchlist thresholds, tracking,
    detector) with one camera ``eval-cam``, plates off, parallelism 1, no retained checkpoints,
    and topics/group unique to this run."""
    data = base.model_dump()
    data["deployment"] = f"eval-watchlist-{suffix}"
    data["cameras"] = [{"id": CAMERA}]
    kafka = data["kafka"]
    if bootstrap:
        kafka["bootstrap_servers"] = bootstrap
    kafka["group_id"] = f"eval-watchlist-{suffix}"
    kafka["topics"] = {**{f: f"eval-watchlist-{suffix}-{f.replace('_', '-')}" for f in TOPIC_FIELDS},
                       "partitions": 1}
    job = data["job"]
    job["parallelism"] = 1
    job["checkpoint_dir"] = None
    job["recognition"]["plates"] = False
    job["recognition"]["faces"] = True
    job["watchlist"]["enabled"] = True
    return Config.model_validate(data)


class _Collector(threading.Thread):
    """Reads the alerts and analyses topics from the start while the eval runs, noting the
    wall time each record arrived."""

    def __init__(self, config: Config):
        super().__init__(daemon=True, name="eval-watchlist-collector")
        from camflow.schemas.codec import AvroCodec
        self.config = config
        topics = config.kafka.topics
        self.codec = AvroCodec("Alert", config.kafka.registry_conf(), subject=f"{topics.alerts}-value")
        self.alerts: list[tuple[int, dict]] = []  # (arrival wall ms, alert)
        self.analysed = 0
        self.dead_letters = 0
        self.last_arrival = time.monotonic()
        self.error: BaseException | None = None
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition
        kafka, topics = self.config.kafka, self.config.kafka.topics
        consumer = Consumer({**kafka.client_conf(), "group.id": f"{kafka.group_id}-collector",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 50})
        try:
            consumer.assign([TopicPartition(t, 0, 0)
                             for t in (topics.alerts, topics.analyses, topics.dead_letters)])
            while not self.stop_event.is_set():
                msg = consumer.poll(0.1)
                if msg is None or msg.error():
                    continue
                arrived = _now_ms()
                with self.lock:
                    self.last_arrival = time.monotonic()
                    if msg.topic() == topics.alerts:
                        self.alerts.append((arrived, self.codec.decode(msg.value())))
                    elif msg.topic() == topics.analyses:
                        self.analysed += 1
                    else:
                        self.dead_letters += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc
        finally:
            consumer.close()

    def snapshot(self) -> tuple[list[tuple[int, dict]], int, int, float]:
        with self.lock:
            return list(self.alerts), self.analysed, self.dead_letters, self.last_arrival


class _Publisher:
    """One frame at a time, acked, with the wall time it was sent (latency is measured from it)."""

    def __init__(self, config: Config):
        from camflow.services.publish import FramePublisher
        self.frames = FramePublisher(config, "camflow-eval-watchlist")
        self.sequence = 0

    def frame(self, image: np.ndarray, jpeg: bytes, capture_ms: int) -> int:
        sent = _now_ms()
        self.frames.publish(CAMERA, image, [(self.sequence, capture_ms)], jpeg=jpeg)
        self.sequence += 1
        return sent


def _wait_running(client, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        status = client.get_job_status().result()
        name = getattr(status, "name", str(status))
        if name == "RUNNING":
            return
        if name in ("FAILED", "CANCELED", "FINISHED", "SUSPENDED"):
            raise RuntimeError(f"the eval job ended before running: {name}")
        time.sleep(0.5)
    raise TimeoutError(f"the eval job is not running after {timeout_s:.0f}s (status {status})")


def eval_watchlist(images_dir: str | Path, labels_csv: str | Path,
                   config: Config | str | Path | None = None, bootstrap: str | None = None,
                   frames: int = 6, step_ms: int = 500, pace: bool = True,
                   idle_timeout_s: float = 20.0, start_timeout_s: float = 300.0,
                   max_wait_s: float = 900.0) -> dict:
    """Watchlist face alerts of the real job on labelled photos (see the module doc)."""

    from camflow.evaluation.perception import _imread, _read_rows
    from camflow.core.kafka import ensure_topic
    from camflow.transforms.frames import encode_jpeg, resize_to_max_width
    from camflow.services.enrolment import EnrolmentError, Watchlist

    if frames < 2:
        raise ValueError("a clip needs at least 2 frames")
    images_dir = Path(images_dir)
    base = config if isinstance(config, Config) else load_config(config)
    cfg = eval_config(base, uuid.uuid4().hex[:8], bootstrap)
    kafka, job = cfg.kafka, cfg.job
    camera = cfg.camera(CAMERA)

    rows = [r for r in _read_rows(labels_csv)
            if r.get("multi_face", "0") in ("0", "", "false", "False")]
    photos: "OrderedDict[str, list[str]]" = OrderedDict()
    for r in rows:
        photos.setdefault(r["person_id"], []).append(r["file"])

    for field in TOPIC_FIELDS:
        ensure_topic(kafka, getattr(kafka.topics, field), 1,
                     {"cleanup.policy": "compact"} if field == "watchlist" else None)

    # Enrolment: the first usable photo of every person with >= 2 photos.
    watchlist = Watchlist(kafka)
    enrolled: dict[str, str] = {}
    enrolment_failures: list[str] = []
    for person, files in photos.items():
        if len(files) < 2:
            continue
        for k, file in enumerate(files[:-1]):  # keep at least one photo as a query
            try:
                watchlist.add_face(person, person, "wanted", [str(images_dir / file)],
                                   reason="camflow eval watchlist", added_by="camflow-eval")
            except EnrolmentError as exc:
                enrolment_failures.append(str(exc))
                continue
            enrolled[person] = file
            break
    queries = [(r["person_id"], r["file"]) for r in rows if enrolled.get(r["person_id"]) != r["file"]]

    # Capture-time schedule: each clip far enough from the last that the tracker starts a new
    # track and the (per subject and camera) alert cooldown has passed.
    clip_ms = (frames - 1) * step_ms
    gap_ms = (max(job.watchlist.cooldown_ms, job.tracking.max_age_ms, job.watchlist.confirm_window_ms)
              + clip_ms + 10_000)
    first_ms = _now_ms() - (len(queries) + 1) * gap_ms - 60_000
    if _now_ms() - first_ms > job.limits.max_age_ms - 3_600_000:
        raise ValueError(f"{len(queries)} clips spaced {gap_ms} ms apart (the watchlist cooldown) "
                         f"reach back further than job.limits.max_age_ms allows")

    threshold = job.watchlist.face_threshold
    collector = _Collector(cfg)
    collector.start()
    publisher = _Publisher(cfg)
    clips: list[dict] = []
    from camflow.jobs.camera_job import start
    t_begin = time.monotonic()
    client = start(cfg, parallelism=1, job_name=cfg.deployment)
    try:
        _wait_running(client, start_timeout_s)
        # Warm-up: one empty frame, analysed before any query, so the operators are open and
        # the watchlist broadcast has been read (it is read from the start, before frames).
        blank = np.full((480, 640, 3), 128, np.uint8)
        publisher.frame(blank, encode_jpeg(blank, 90), first_ms)
        deadline = time.monotonic() + start_timeout_s
        while collector.snapshot()[1] < 1:
            if collector.error is not None:
                raise RuntimeError(f"reading the eval topics failed: {collector.error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the eval job analysed no frame in {start_timeout_s:.0f}s")
            time.sleep(0.2)
        time.sleep(2.0)
        startup_s = time.monotonic() - t_begin

        for i, (person, file) in enumerate(queries):
            image = _imread(images_dir / file)
            clip = {"file": file, "person": person, "enrolled": person in enrolled,
                    "start_ms": first_ms + (i + 1) * gap_ms, "sent_ms": []}
            clip["end_ms"] = clip["start_ms"] + clip_ms
            clips.append(clip)
            if image is None:
                clip["unreadable"] = True
                continue
            image = resize_to_max_width(image, camera.max_width)
            jpeg = encode_jpeg(image, 90)
            for k in range(frames):
                tick = time.monotonic()
                clip["sent_ms"].append(publisher.frame(image, jpeg, clip["start_ms"] + k * step_ms))
                if pace:
                    time.sleep(max(0.0, step_ms / 1000 - (time.monotonic() - tick)))
        published = 1 + sum(len(c["sent_ms"]) for c in clips)
        last_publish = time.monotonic()

        # Wait: every frame analysed and the alerts settled, or silence, or the hard limit.
        all_analysed_at = None
        expected = {c["file"] for c in clips if c["enrolled"] and c["sent_ms"]}
        while True:
            if collector.error is not None:
                raise RuntimeError(f"reading the eval topics failed: {collector.error}")
            alerts, analysed, dead, last_arrival = collector.snapshot()
            now = time.monotonic()
            if analysed + dead >= published and all_analysed_at is None:
                all_analysed_at = now
            if all_analysed_at is not None:
                alerted = {c["file"] for c in clips for _, a in alerts
                           if a["type"] == "watchlist_face" and c["start_ms"] <= a["time_ms"] <= c["end_ms"]
                           and a["subject"] == c["person"]}
                settle = 3.0 if expected <= alerted else idle_timeout_s
                if now - all_analysed_at >= settle:
                    break
            if now - max(last_publish, last_arrival) > idle_timeout_s:
                break
            if now - last_publish > max_wait_s:
                break
            time.sleep(0.2)
    finally:
        try:
            client.cancel().result()
        finally:
            collector.stop_event.set()
            collector.join(10)
    alerts, analysed, dead, _ = collector.snapshot()
    return _score(clips, alerts, threshold, enrolled, enrolment_failures,
                  {"frames_published": published, "frames_analysed": analysed,
                   "dead_letters": dead, "startup_s": round(startup_s, 1),
                   "wall_s": round(time.monotonic() - t_begin, 1)})


def _score(clips: list[dict], alerts: list[tuple[int, dict]], threshold: float,
           enrolled: dict[str, str], enrolment_failures: list[str], extra: dict) -> dict:
    seen: dict[str, tuple[int, dict]] = {}
    for arrived, alert in alerts:  # at-least-once sink: keep the first copy of each alert id
        if alert["type"] == "watchlist_face" and alert["camera_id"] == CAMERA:
            seen.setdefault(alert["alert_id"], (arrived, alert))
    per_clip: dict[int, list[tuple[int, dict]]] = {}
    unmatched = 0
    for arrived, alert in seen.values():
        k = next((i for i, c in enumerate(clips) if c["start_ms"] <= alert["time_ms"] <= c["end_ms"]),
                 None)
        if k is None:
            unmatched += 1
        else:
            per_clip.setdefault(k, []).append((arrived, alert))
    true_alerts = wrong = missed = false_unenrolled = 0
    latencies: list[int] = []
    missed_files, wrong_files, false_files = [], [], []
    for k, clip in enumerate(clips):
        found = per_clip.get(k, [])
        for arrived, alert in found:
            step = (clip["end_ms"] - clip["start_ms"]) / max(len(clip["sent_ms"]) - 1, 1)
            frame = min(len(clip["sent_ms"]) - 1, max(0, round((alert["time_ms"] - clip["start_ms"]) / step)))
            if clip["sent_ms"]:
                latencies.append(arrived - clip["sent_ms"][frame])
        subjects = {a["subject"] for _, a in found}
        if clip["enrolled"]:
            if clip["person"] in subjects:
                true_alerts += 1
            else:
                missed += 1
                missed_files.append(clip["file"])
            if subjects - {clip["person"]}:
                wrong += 1
                wrong_files.append(clip["file"])
        elif subjects:
            false_unenrolled += 1
            false_files.append(clip["file"])
    return {
        "queries": len(clips),
        "enrolled": len(enrolled),
        "queries_of_enrolled": sum(c["enrolled"] for c in clips),
        "true_alerts": true_alerts,
        "wrong_person": wrong,
        "missed": missed,
        "false_alerts_on_unenrolled": false_unenrolled,
        "unmatched_alerts": unmatched,
        "p50_latency_ms": int(statistics.median(latencies)) if latencies else None,
        "max_latency_ms": max(latencies) if latencies else None,
        "threshold": threshold,
        "missed_files": missed_files,
        "wrong_person_files": wrong_files,
        "false_alert_files": false_files,
        "enrolment_failures": enrolment_failures,
        **extra,
    }
