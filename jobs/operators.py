"""PyFlink operators: small classes that hold the job's state and call ``camflow.transforms``.

Each operator's state is explicit: a named Flink state of plain, picklable Python values, so
that it survives checkpoints and restores. The work itself lives in ``transforms/``.
"""
from __future__ import annotations

import time

from pyflink.common import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (KeyedProcessFunction, MapFunction, OutputTag, ProcessFunction,
                                RuntimeContext)
from pyflink.datastream.functions import KeyedBroadcastProcessFunction
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from camflow.config import Config
from camflow.core import perception
from camflow.core.evidence_store import AlertSnapshots
from camflow.core.frame_store import FrameRefError, configured_store
from camflow.jobs.metrics import OperatorMetrics, analyse_metrics, count_analysis
from camflow.schemas.codec import AvroCodec, SchemaError
from camflow.transforms import aggregate, frames
from camflow.transforms.alerts import CrowdLimitRule
from camflow.transforms.anomaly import WindowAnomaly
from camflow.transforms.camera_analysis import CameraState
from camflow.transforms.dead_letters import dead_letter
from camflow.transforms.detections import analysis_record
from camflow.transforms.evidence import Marks
from camflow.transforms.windows import WindowBook, WindowSpec
from camflow.transforms import watchlist as wl

# Records the job cannot use leave through this side output as DeadLetter dicts.
DEAD_LETTERS = OutputTag("dead-letters", Types.PICKLED_BYTE_ARRAY())
# Alerts raised inside keyed operators (behaviour rules, camera liveness).
ALERTS = OutputTag("alerts", Types.PICKLED_BYTE_ARRAY())
# Confirmed watchlist matches (Sighting dicts).
SIGHTINGS = OutputTag("sightings", Types.PICKLED_BYTE_ARRAY())
# Every face read with a usable embedding (FaceEmbedding dicts), for retroactive search.
FACE_EMBEDDINGS = OutputTag("face-embeddings", Types.PICKLED_BYTE_ARRAY())
# What each person / vehicle track looks like (job.appearance), for camflow find / similar.
APPEARANCES = OutputTag("appearances", Types.PICKLED_BYTE_ARRAY())
# The watchlist as broadcast state: "kind:id" -> WatchlistEntry dict.
WATCHLIST = MapStateDescriptor("watchlist", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
# Frames that arrive after their window closed (beyond allowed lateness).
LATE_FOR_WINDOW = OutputTag("late-for-window", Types.PICKLED_BYTE_ARRAY())


# The watermark Flink emits when a bounded source is exhausted (Long.MAX_VALUE).
END_OF_INPUT = 2**63 - 1


def now_ms() -> int:
    return int(time.time() * 1000)


def frame_store_reader(config: Config):
    """``jpeg_ref`` -> JPEG bytes through the configured frame store (None: no store).

    A reference the store does not serve is a bad record (dead letter), like a missing frame;
    a store that cannot be reached raises, and the task restarts from its checkpoint."""
    store = configured_store(config)
    if store is None:
        return None
    max_bytes = config.job.limits.max_jpeg_bytes

    def read(ref: str) -> bytes | None:
        try:
            return store.get(ref, max_bytes=max_bytes)
        except FrameRefError as exc:
            raise frames.BadFrame(exc.reason_code, str(exc)) from None
    return read


class AdmitFrames(ProcessFunction):
    """frames topic bytes -> FrameSample dicts; everything unreadable goes to dead letters.

    Record-level checks happen here, before event time is assigned: a frame stamped far in the
    future must never advance the watermark and make every other camera's frames late.
    """

    def __init__(self, config: Config):
        self.topic = config.kafka.topics.frames
        self.registry = config.kafka.registry_conf()
        self.limits = config.job.limits
        self.known_cameras = ({c.id for c in config.cameras}
                              if config.job.reject_unknown_cameras else None)
        self.codec: AvroCodec | None = None
        self.metrics = None

    def open(self, runtime_context: RuntimeContext):
        self.codec = AvroCodec("FrameSample", self.registry, subject=f"{self.topic}-value")
        self.metrics = OperatorMetrics(runtime_context).declare("frames_in")

    def process_element(self, value: bytes, ctx: ProcessFunction.Context):
        self.metrics.inc("frames_in")
        try:
            record = self.codec.decode(value)
        except SchemaError as exc:
            self.metrics.inc("frames_rejected", reason=exc.reason)
            yield DEAD_LETTERS, dead_letter(exc.reason, exc.message, "admit", self.topic, value)
            return
        camera_id = record["camera_id"]
        try:
            if self.known_cameras is not None and camera_id not in self.known_cameras:
                raise frames.BadFrame(frames.UNKNOWN_CAMERA, f"camera {camera_id!r} is not configured")
            record["admitted_ms"] = now_ms()
            frames.check_timestamp(record["capture_ms"], record["admitted_ms"], self.limits)
        except frames.BadFrame as exc:
            self.metrics.inc("frames_rejected", reason=exc.reason_code)
            yield DEAD_LETTERS, dead_letter(exc.reason_code, exc.message, "admit", self.topic,
                                            value, camera_id)
            return
        yield record


class CaptureTime(TimestampAssigner):
    """Event time is the capture time the sampler stamped, not the Kafka record time."""

    def extract_timestamp(self, value: dict, record_timestamp: int) -> int:
        return value["capture_ms"]


class AnalyseFrames(KeyedProcessFunction):
    """Per camera: decode the JPEG (once), then ``transforms.camera_analysis``'s step: detect
    (motion-gated), track, read faces and plates of tracks not yet recognised, run the
    camera's scene rules, describe each track's best crop (``APPEARANCES``) and watch for the
    camera going silent (``camera_offline``).

    This operator only moves the camera's state between Flink and the step. Each part of
    ``CameraState`` is its own named Flink state (``motion``, ``tracker``, ``recognition``,
    ``behaviour``, ``liveness``, ``appearance``), plus ``liveness_timer``: the one pending silence check
    (event time), so that a frame does not register a timer of its own (41 cameras at 1 fps
    would keep ~5000 pending, each firing a Python call two minutes later).
    """

    STATES = ("motion", "tracker", "recognition", "behaviour", "liveness", "appearance")

    def __init__(self, config: Config):
        self.config = config
        self.topic = config.kafka.topics.frames
        self.limits = config.job.limits
        self.step = None
        self.read_frame = None
        self.states = {}
        self.liveness_timer = None
        self.metrics = None
        self.snapshots = None

    def open(self, runtime_context: RuntimeContext):
        self.step = perception.camera_analysis(self.config)
        self.read_frame = frame_store_reader(self.config)
        self.snapshots = AlertSnapshots(self.config)
        self.metrics = analyse_metrics(runtime_context, self.step)  # times the models in place
        self.states = {name: runtime_context.get_state(
            ValueStateDescriptor(name, Types.PICKLED_BYTE_ARRAY())) for name in self.STATES}
        self.liveness_timer = runtime_context.get_state(
            ValueStateDescriptor("liveness_timer", Types.LONG()))

    def _state(self) -> CameraState:
        return CameraState(**{name: state.value() for name, state in self.states.items()})

    def _keep(self, state: CameraState) -> None:
        for name, value in vars(state).items():
            self.states[name].update(value)

    def process_element(self, record: dict, ctx: KeyedProcessFunction.Context):
        try:
            analysis = frames.validate(record, now_ms=record["admitted_ms"], limits=self.limits,
                                       resolve_jpeg_ref=self.read_frame)
        except frames.BadFrame as exc:
            payload = AvroCodec("FrameSample").encode({k: v for k, v in record.items()
                                                       if k != "admitted_ms"})
            yield DEAD_LETTERS, dead_letter(exc.reason_code, exc.message, "analyse", self.topic,
                                            payload, record.get("camera_id"))
            return
        step = self.step.frame(self._state(), analysis, self._watermark(ctx))
        self._keep(step.state)
        self._arm_liveness(step.next_check_ms, ctx)
        scene = self.step.settings_for(analysis.camera_id).scene.scene
        for alert in self.snapshots.frame_alerts(step.alerts, analysis.image, analysis.detections,
                                                 scene):
            yield ALERTS, alert
        for appearance in step.appearances:
            yield APPEARANCES, appearance
        analysis.image = None  # the decoded frame stays inside this operator chain
        if analysis.jpeg_ref or not (len(analysis.faces) or len(analysis.plates)):
            # Only watchlist matching needs the JPEG again (evidence crops of faces and plates);
            # every other frame leaves without its ~50-100 KB, which each later hop through
            # Flink's runtime would copy and serialise. A claim-checked frame never carries it.
            analysis.jpeg = b""
        count_analysis(self.metrics, analysis)
        yield analysis

    @staticmethod
    def _watermark(ctx) -> int | None:
        watermark = ctx.timer_service().current_watermark()
        # A bounded run ended: the final watermark is no silence of the camera.
        return None if watermark >= END_OF_INPUT else watermark

    def _arm_liveness(self, next_check: int | None, ctx) -> None:
        # One pending check per camera: a later frame moves the deadline, and the check that
        # fires first sees that and sets the next one (``on_timer``).
        watermark, pending = ctx.timer_service().current_watermark(), self.liveness_timer.value()
        if next_check is not None and (pending is None or pending <= watermark
                                       or next_check < pending):
            ctx.timer_service().register_event_time_timer(next_check)
            self.liveness_timer.update(next_check)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        """The watermark passed a camera's check time: silent since its last frame, or not."""
        pending = self.liveness_timer.value()
        if pending is not None and pending <= timestamp:
            self.liveness_timer.clear()
        watermark = self._watermark(ctx)
        if watermark is None:
            return
        step = self.step.silence(self._state(), ctx.get_current_key(), watermark)
        self._keep(step.state)
        self._arm_liveness(step.next_check_ms, ctx)
        for alert in step.alerts:
            yield ALERTS, alert


def encode_analysis(analysis) -> dict:
    return analysis_record(analysis, processed_ms=now_ms())


def aggregate_record(window: dict) -> dict:
    """The ``Aggregate`` record of a window: without the busiest frame its alerts were drawn on."""
    return {k: v for k, v in window.items() if k != "busiest_frame"}


class CountPerWindow(KeyedProcessFunction):
    """Per camera: frame summaries counted into event-time windows (tumbling, or sliding when
    ``slide_ms < size_ms``); a window's ``Aggregate`` is emitted once the watermark passes its
    end, again if a frame updates it within the allowed lateness; frames late for every window
    go to the ``LATE_FOR_WINDOW`` side output.

    State: ``open_windows`` -- window start -> ``OpenWindow`` (accumulator, emitted?), a plain
    dict (``transforms.windows``).

    Why not Flink's window operator: in the chaos test (a TaskManager failover, then the whole
    job restored from the first checkpoint the recovered job completed) windows whose frames had
    all been read before that checkpoint were never emitted: they did not fire from their own
    timer after the restore. Here every element and every timer of a camera emits all of its
    windows the watermark has passed, so a window only depends on its state.
    """

    def __init__(self, size_ms: int, slide_ms: int, allowed_lateness_ms: int = 0,
                 report_late: bool = True):
        # A side output nobody reads is not dropped by PyFlink: the (tag, value) pair would
        # reach the main output. Only the instance whose late frames are wired reports them.
        self.report_late = report_late
        self.spec = WindowSpec(size_ms, slide_ms, allowed_lateness_ms)
        self.book = WindowBook(self.spec, aggregate.WindowCounts.create, aggregate.WindowCounts.add)
        self.open_windows = None

    def open(self, runtime_context: RuntimeContext):
        self.open_windows = runtime_context.get_state(
            ValueStateDescriptor("open_windows", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, summary: dict, ctx: KeyedProcessFunction.Context):
        watermark = ctx.timer_service().current_watermark()
        book = self.open_windows.value() or {}
        camera = ctx.get_current_key()
        yield from self._aggregates(camera, self.book.due(book, watermark))
        known = set(book)
        updates, live = self.book.add(book, summary["capture_ms"], summary, watermark)
        if not live and self.report_late:
            yield LATE_FOR_WINDOW, summary
        yield from self._aggregates(camera, updates)
        # Timers only for windows this frame opened: the others have theirs already (timers
        # are checkpointed with the state). Each registration is a message to the JVM; a
        # 5-minute window sliding by 1 minute re-registered 5 timers on every frame.
        for timer in self.book.timers(s for s in live if s not in known):
            if timer > watermark:
                ctx.timer_service().register_event_time_timer(timer)
        self._keep(book)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        book = self.open_windows.value() or {}
        watermark = max(timestamp, ctx.timer_service().current_watermark())
        yield from self._aggregates(ctx.get_current_key(), self.book.due(book, watermark))
        self._keep(book)

    def _aggregates(self, camera: str, windows):
        for start, accumulator in windows:
            window = aggregate.WindowCounts.result(accumulator, camera, start,
                                                   start + self.spec.size_ms)
            window["busiest_frame"] = aggregate.WindowCounts.busiest_frame(accumulator)
            yield window

    def _keep(self, book: dict) -> None:
        if book:
            self.open_windows.update(book)
        else:
            self.open_windows.clear()


class LateFrames(ProcessFunction):
    """Frame summaries that missed their window: kept as dead letters with the reason."""

    def __init__(self, topic: str):
        self.topic = topic

    def process_element(self, summary: dict, ctx: ProcessFunction.Context):
        import json
        yield dead_letter("late_for_window", "frame arrived after its window closed "
                          "(beyond allowed lateness); its analysis was still emitted",
                          "aggregate", self.topic, json.dumps(summary).encode(),
                          summary.get("camera_id"))


class ScoreWindows(KeyedProcessFunction):
    """Per camera: each window's counts scored against the camera's learned baseline (per hour
    of week); emits the Aggregate with its ``anomaly_score`` and, after K unusual windows in a
    row, a ``crowd_surge`` / ``unusual_absence`` / ``traffic_jam`` alert (side output).

    State: ``baseline`` -- the per-slot robust statistics (plain dict).
    """

    def __init__(self, config: Config):
        self.config = config
        self.anomaly = WindowAnomaly(config.job.anomaly)
        self.baseline = None
        self.snapshots = None

    def open(self, runtime_context: RuntimeContext):
        self.baseline = runtime_context.get_state(
            ValueStateDescriptor("baseline", Types.PICKLED_BYTE_ARRAY()))
        self.snapshots = AlertSnapshots(self.config)

    def process_element(self, window: dict, ctx: KeyedProcessFunction.Context):
        step = self.anomaly.step(self.baseline.value(), window)
        self.baseline.update(step.state)
        for alert in self.snapshots.window_alerts(step.alerts, window):
            yield ALERTS, alert
        yield step.extra["aggregate"]


class CrowdAlerts(ProcessFunction):
    """Window aggregates -> ``crowd_limit`` alerts for cameras with a configured limit."""

    def __init__(self, config: Config):
        self.config = config
        self.rule = CrowdLimitRule(config.crowd_limits(), default_limit=config.job.default_crowd_limit)
        self.snapshots = None

    def open(self, runtime_context: RuntimeContext):
        self.snapshots = AlertSnapshots(self.config)

    def process_element(self, window: dict, ctx: ProcessFunction.Context):
        yield from self.snapshots.window_alerts(self.rule.evaluate(window), window)


def summarise(analysis) -> dict:
    return aggregate.summarise(analysis)


class DecodeWatchlist(ProcessFunction):
    """watchlist topic bytes -> WatchlistEntry dicts (bad records -> dead letters)."""

    def __init__(self, config: Config):
        self.topic = config.kafka.topics.watchlist
        self.registry = config.kafka.registry_conf()
        self.codec = None

    def open(self, runtime_context: RuntimeContext):
        self.codec = AvroCodec("WatchlistEntry", self.registry, subject=f"{self.topic}-value")

    def process_element(self, value: bytes, ctx: ProcessFunction.Context):
        try:
            entry = self.codec.decode(value)
            if not entry["removed"]:
                wl.normalise_entry(entry)  # embeddings finite and non-zero, kind/category known
        except (SchemaError, wl.WatchlistError) as exc:
            reason = getattr(exc, "reason", "bad_entry")
            yield DEAD_LETTERS, dead_letter(reason, str(exc), "watchlist", self.topic, value or b"")
            return
        yield entry


class MatchWatchlist(KeyedBroadcastProcessFunction):
    """Per camera: faces and plates read on tracks -> watchlist alerts and sightings, and
    every face read (with the subject it matched, if any) as a FaceEmbedding (side output
    ``FACE_EMBEDDINGS``), also while no face is enrolled: retroactive search needs them.

    The watchlist arrives as broadcast state (every parallel instance holds all of it), so
    additions and removals apply live and are part of every checkpoint. The FAISS index and
    the plate lookup are derived from that state in memory, rebuilt after a restore.

    Keyed state: ``faces`` / ``plates`` -- each decider's pending confirmations and open
    alerts (plain dicts).
    """

    def __init__(self, config: Config):
        m = config.job.watchlist
        self.evidence_max_bytes = m.evidence_max_bytes
        self.limits = config.job.limits
        self.config = config
        self.read_frame = None
        self.face_decider = wl.FaceMatchDecider(m)
        self.plate_decider = wl.PlateMatchDecider(m)
        self.watchlist = None  # derived, in memory: WatchlistState, FaceIndex, PlateWatchlist
        self.face_index = None
        self.plate_index = None
        self.faces_state = None
        self.plates_state = None
        self.metrics = None
        self.snapshots = None

    def open(self, runtime_context: RuntimeContext):
        self.metrics = OperatorMetrics(runtime_context).declare("watchlist_matches")
        self.read_frame = frame_store_reader(self.config)
        self.snapshots = AlertSnapshots(self.config)
        self.metrics.gauge("watchlist_faces", lambda: self._watchlist_size("face"))
        self.metrics.gauge("watchlist_plates", lambda: self._watchlist_size("plate"))
        self.faces_state = runtime_context.get_state(
            ValueStateDescriptor("faces", Types.PICKLED_BYTE_ARRAY()))
        self.plates_state = runtime_context.get_state(
            ValueStateDescriptor("plates", Types.PICKLED_BYTE_ARRAY()))

    def _watchlist_size(self, kind: str) -> int:
        return len(self.watchlist.of_kind(kind)) if self.watchlist is not None else 0

    def _derive(self, entries) -> None:
        self.watchlist = wl.WatchlistState().apply_all(entries)
        self.face_index = wl.FaceIndex.build(self.watchlist)
        self.plate_index = wl.PlateWatchlist.build(self.watchlist)

    def process_broadcast_element(self, entry: dict, ctx: KeyedBroadcastProcessFunction.Context):
        key = wl.entry_key(entry["kind"], entry["id"])
        ctx.get_broadcast_state(WATCHLIST).put(key, entry)
        if self.watchlist is None:
            self._derive([e for _, e in ctx.get_broadcast_state(WATCHLIST).items()])
            return
        self.watchlist = self.watchlist.apply(entry)
        current = self.watchlist.get(entry["kind"], entry["id"])
        if entry["kind"] == "face":
            self.face_index.update_entry(entry["id"], current)
            if self.face_index.needs_rebuild:
                self.face_index = wl.FaceIndex.build(self.watchlist)
        else:
            self.plate_index.update_entry(entry["id"], current)

    def process_element(self, analysis, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext):
        if self.watchlist is None:  # first element after start or restore
            self._derive([e for _, e in ctx.get_broadcast_state(WATCHLIST).items()])
        alerts, sightings = [], []
        if len(analysis.faces):
            subjects, similarities = wl.search_faces(analysis.faces, self.face_index)
            if len(self.watchlist.of_kind("face")):
                state = self.faces_state.value() or self.face_decider.new_state()
                found = self.face_decider.observe(
                    state, analysis.camera_id, analysis.capture_ms, analysis.faces.tracker_id,
                    subjects, similarities, self.watchlist)
                self.faces_state.update(state)
                alerts += self._with_evidence(found[0], analysis, analysis.faces)
                sightings += found[1]
            matched = self.face_decider.matched_subjects(subjects, similarities)
            for record in wl.face_embedding_records(analysis.camera_id, analysis.capture_ms,
                                                    analysis.sequence, analysis.faces, matched):
                yield FACE_EMBEDDINGS, record
        if len(analysis.plates) and len(self.plate_index):
            state = self.plates_state.value() or self.plate_decider.new_state()
            found = self.plate_decider.observe(
                state, analysis.camera_id, analysis.capture_ms, analysis.plates.tracker_id,
                [str(t) for t in analysis.plates.data["plate_text"]], self.plate_index)
            self.plates_state.update(state)
            alerts += self._with_evidence(found[0], analysis, analysis.plates)
            sightings += found[1]
        self.metrics.inc("watchlist_matches", len(sightings))
        for sighting in sightings:
            yield SIGHTINGS, sighting
        yield from alerts

    def _with_evidence(self, alerts: list[dict], analysis, objects) -> list[dict]:
        """Attach a size-capped JPEG crop of the matching face or plate, and the whole frame
        with it boxed as the snapshot (decoded only now: alerts are rare, so the frame is not
        kept decoded for them)."""
        if not alerts or not (self.evidence_max_bytes or self.snapshots.enabled):
            return alerts
        jpeg = analysis.jpeg
        if not jpeg and analysis.jpeg_ref and self.read_frame is not None:
            try:
                jpeg = self.read_frame(analysis.jpeg_ref)
            except frames.BadFrame:
                jpeg = None
        if not jpeg:  # the frame left the store already: the alert goes out without a crop
            return alerts
        try:
            image = frames.decode_jpeg(jpeg, self.limits)
        except frames.BadFrame:  # the alert still goes out, with its JSON evidence
            return alerts
        for alert in alerts:
            rows = [i for i, t in enumerate(objects.tracker_id) if t == alert.get("track_id")]
            row = rows[0] if rows else int(objects.confidence.argmax())
            if self.snapshots.enabled:
                marks = Marks()
                marks.add(objects.xyxy[row], str(alert.get("subject", "")), True)
                self.snapshots.write(alert, image, marks)
            if not self.evidence_max_bytes:
                continue
            try:
                alert["evidence_jpeg"] = wl.evidence_crop(image, objects.xyxy[row],
                                                          max_bytes=self.evidence_max_bytes)
            except wl.EvidenceError:
                pass  # the alert still goes out, with its JSON evidence
        return alerts


def unmatched_faces(analysis) -> list[dict]:
    """A run without the watchlist wired (a bounded run before any enrolment): every face
    read as an unmatched FaceEmbedding, so that it can still be searched later."""
    return wl.face_embedding_records(analysis.camera_id, analysis.capture_ms, analysis.sequence,
                                     analysis.faces)


class EncodeRecords(MapFunction):
    """Records -> ``(Kafka key, Avro value)`` for a Kafka sink (``kafka_io.KEYED``), counted on
    the way out: ``records_out``, and with ``count_as``/``count_by`` also per value of a field
    (alerts by type, dead letters by reason: ``type.crowd_limit.alerts``,
    ``reason.corrupt_jpeg.dead_letters``). ``prepare`` turns the element into the record first
    (e.g. ``encode_analysis``). The key is the record's ``key_field`` (the camera id) as UTF-8,
    empty (no key) where the record has none."""

    def __init__(self, contract: str, registry: dict | None, topic: str,
                 count_as: str | None = None, count_by: str | None = None, prepare=None,
                 key_field: str = "camera_id"):
        self.contract, self.registry, self.topic = contract, registry, topic
        self.count_as, self.count_by, self.prepare = count_as, count_by, prepare
        self.key_field = key_field
        self.codec = None
        self.metrics = None

    def open(self, runtime_context: RuntimeContext):
        self.codec = AvroCodec(self.contract, self.registry, subject=f"{self.topic}-value")
        self.metrics = OperatorMetrics(runtime_context).declare("records_out")

    def map(self, record) -> tuple[bytes, bytes]:
        if self.prepare is not None:
            record = self.prepare(record)
        self.metrics.inc("records_out")
        if self.count_as:
            self.metrics.inc(self.count_as, **{self.count_by: record.get(self.count_by)})
        key = record.get(self.key_field)
        return (key.encode("utf-8") if key else b""), self.codec.encode(record)
