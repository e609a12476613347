"""``make fuzz``: hostile frames and records through the job's admit and analyse logic.

Mutates real frames (``../shared/data/scenes``, scaled as the sampler scales them; synthetic
frames when the data is absent) and FrameSample records, and runs each input through what the
job does with a value of the ``frames`` topic, without Flink:

- admit (``AdmitFrames``): ``AvroCodec("FrameSample").decode``, the camera check, the timestamp
  check;
- analyse (``AnalyseFrames``): ``frames.validate`` with a file frame store resolving
  ``jpeg_ref``, then the motion gate's thumbnail against the camera's reference.

Every refusal is built into a dead letter by ``transforms.dead_letters.dead_letter`` and encoded
as a ``DeadLetter``, which must fit in ``MAX_DEAD_LETTER_BYTES``. Mutations: bit flips,
truncation, marker surgery (deleted, duplicated, re-typed, resized segments; SOF sizes), progressive
JPEGs and scan bombs, arithmetic-coded / lossless / hierarchical markers, extreme dimensions,
odd ``jpeg_ref`` values (directories, NUL, a FIFO, symlinks, sparse huge files, escapes, other
schemes), Avro field and byte mutations, random bytes.

Checks: no exception escapes; every input is either accepted (a decoded frame whose size the
limits allow) or a dead letter with a known reason; an input known to be hostile is never
accepted; no input costs more than ``--budget-ms`` of CPU (process time, admit + analyse).

Prints one JSON line: {inputs, dead_letters, escaped, max_ms, p99_ms, ...}; exits 1 when a
check fails. ``python -m bench.fuzz --inputs 10000`` is ``make fuzz``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from camflow.core.frame_store import FileFrameStore
from camflow.schemas.codec import AvroCodec, SchemaError
from camflow.transforms import frames
from camflow.transforms.dead_letters import dead_letter
from camflow.transforms.detections import Detections
from camflow.transforms.motion import MotionGate

# CPU per input, admit + analyse. The costliest inputs the limits admit are 3840x2160 frames
# (baseline, progressive, and progressive at the pixel-pass budget of 16 scans): at most 117 ms
# of CPU in 10,000 inputs on the project's 2-core machine (p99 16 ms; a 960-px frame ~10 ms).
# Before the limits, one 4 MiB scan bomb cost minutes.
DEFAULT_BUDGET_MS = 500.0
MAX_DEAD_LETTER_BYTES = 1024 * 1024  # Kafka's default max.message.bytes
SCENES = Path(__file__).resolve().parents[2] / "shared" / "data" / "scenes"
CAMERAS = ("gate", "walkway", "quay", "arrivals")
KNOWN_REASONS = frames.REASON_CODES | {"unknown_schema", "unknown_encoding", "malformed_record"}


@dataclass
class Case:
    kind: str
    value: bytes
    hostile: bool = False  # must end as a dead letter
    good: bool = False  # an ordinary frame: must be accepted


@dataclass
class Outcome:
    verdict: str  # "accepted" | "dead_letter" | "escaped"
    reason: str | None = None
    detail: str = ""
    cpu_ms: float = 0.0


# --- the job's logic without Flink ---------------------------------------------------------
class Pipeline:
    """AdmitFrames + AnalyseFrames (decode, validate, motion gate) for one value."""

    def __init__(self, store: FileFrameStore, limits: frames.FrameLimits = frames.DEFAULT_LIMITS,
                 cameras=CAMERAS):
        self.store, self.limits, self.cameras = store, limits, set(cameras)
        self.codec = AvroCodec("FrameSample")
        self.dead_letters = AvroCodec("DeadLetter")
        self.gate = MotionGate()
        self.gate_state: dict[str, dict] = {}

    def read_frame(self, ref: str) -> bytes | None:
        return self.store.get(ref, max_bytes=self.limits.max_jpeg_bytes)

    def _dead(self, reason: str, message: str, stage: str, payload: bytes,
              camera_id: str | None = None) -> Outcome:
        letter = dead_letter(reason, message, stage, "frames", payload, camera_id)
        encoded = self.dead_letters.encode(letter)
        if len(encoded) > MAX_DEAD_LETTER_BYTES:
            raise AssertionError(f"dead letter of {len(encoded)} bytes")
        return Outcome("dead_letter", reason, message[:200])

    def run(self, value: bytes, now_ms: int) -> Outcome:
        # admit
        try:
            record = self.codec.decode(value)
        except SchemaError as exc:
            return self._dead(exc.reason, exc.message, "admit", value)
        camera_id = record["camera_id"]
        try:
            if camera_id not in self.cameras:
                raise frames.BadFrame(frames.UNKNOWN_CAMERA, f"camera {camera_id[:80]!r} is not "
                                      "configured")
            frames.check_timestamp(record["capture_ms"], now_ms, self.limits)
        except frames.BadFrame as exc:
            return self._dead(exc.reason_code, exc.message, "admit", value, camera_id)
        # analyse
        try:
            analysis = frames.validate(record, now_ms=now_ms, limits=self.limits,
                                       resolve_jpeg_ref=self.read_frame)
        except frames.BadFrame as exc:
            payload = self.codec.encode(record)
            return self._dead(exc.reason_code, exc.message, "analyse", payload, camera_id)
        decision = self.gate.decide(self.gate_state.get(camera_id), analysis.image,
                                    analysis.capture_ms)
        if decision.detect:
            state = MotionGate.ran(decision, Detections(), analysis.capture_ms)
        else:
            _, state = MotionGate.reused(decision, Detections().class_names)
        self.gate_state[camera_id] = state
        height, width = analysis.image.shape[:2]
        if (width * height > self.limits.max_pixels
                or max(width, height) > self.limits.max_aspect_ratio * min(width, height)):
            raise AssertionError(f"accepted a {width}x{height} frame past the limits")
        thumb_shape = state.get("reference_shape") or state.get("candidate_shape")
        if thumb_shape and thumb_shape[0] * thumb_shape[1] > 4 * self.gate.config.thumbnail_width ** 2:
            raise AssertionError(f"motion-gate thumbnail {thumb_shape} past its bound")
        return Outcome("accepted")

    def timed(self, case: Case, now_ms: int) -> Outcome:
        started = time.process_time()
        try:
            outcome = self.run(case.value, now_ms)
        except Exception as exc:  # noqa: BLE001 -- what the fuzzer is looking for
            outcome = Outcome("escaped", type(exc).__name__,
                              "".join(traceback.format_exception_only(exc)).strip()[:300])
        outcome.cpu_ms = (time.process_time() - started) * 1000.0
        return outcome


# --- inputs --------------------------------------------------------------------------------
def _encode(image: np.ndarray, quality: int = 85, progressive: bool = False) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if progressive:
        params += [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    ok, buffer = cv2.imencode(".jpg", image, params)
    assert ok
    return buffer.tobytes()


def real_images(limit: int = 12) -> list[np.ndarray]:
    """Scene photos scaled as the sampler scales camera frames (960 px wide at most); synthetic
    noise-and-shapes frames when the shared data is not there."""
    images = []
    if SCENES.is_dir():
        for path in sorted(SCENES.glob("*.jpg"))[:limit]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                images.append(frames.resize_to_max_width(image, 960))
    if not images:
        rng = np.random.default_rng(7)
        for i in range(4):
            image = rng.integers(0, 255, (540, 960, 3), np.uint8)
            cv2.rectangle(image, (100 + 40 * i, 100), (400, 380), (0, 200, 0), -1)
            images.append(cv2.GaussianBlur(image, (9, 9), 0))
    return images


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment, scans including their entropy data."""
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            break
        end = pos + 2 + ((data[pos + 2] << 8) | data[pos + 3])
        if marker == 0xDA:
            found = frames._NEXT_MARKER.search(data, end)
            end = found.start() if found else len(data)
        out.append((marker, pos, end))
        pos = end
    return out


def with_sof(data: bytes, width: int, height: int, marker: int | None = None) -> bytes:
    for m, start, _ in segments(data):
        if m in frames._SOF_MARKERS:
            out = bytearray(data)
            out[start + 5:start + 7] = height.to_bytes(2, "big")
            out[start + 7:start + 9] = width.to_bytes(2, "big")
            if marker is not None:
                out[start + 1] = marker
            return bytes(out)
    return data


def scan_bomb(progressive: bytes, copies: int, max_bytes: int | None = None) -> bytes:
    """A progressive JPEG with its smallest scan repeated (at most ``max_bytes`` long):
    libjpeg warns and decodes every copy, one pass over the image each."""
    scans = [(s, e) for m, s, e in segments(progressive) if m == 0xDA]
    start, end = min(scans, key=lambda se: se[1] - se[0])
    if max_bytes is not None:
        copies = max(1, min(copies, (max_bytes - len(progressive)) // (end - start)))
    return progressive[:end] + progressive[start:end] * copies + progressive[end:]


class Inputs:
    """Deterministic hostile inputs (``seed``) over a frame store in ``workdir``."""

    def __init__(self, workdir: Path, seed: int, now_ms: int):
        self.rng = random.Random(seed)
        self.now_ms = now_ms
        self.codec = AvroCodec("FrameSample")
        self.store = FileFrameStore(workdir / "frames")
        self.outside = workdir / "outside"
        self.outside.mkdir(parents=True, exist_ok=True)
        images = real_images()
        self.baseline = [_encode(i) for i in images]
        self.progressive = [_encode(i, progressive=True) for i in images]
        big = cv2.resize(images[0], (3840, 2160), interpolation=cv2.INTER_LINEAR)
        self.big = [_encode(big, 80), _encode(big, 80, progressive=True)]
        # The costliest frame the limits admit: a 4K progressive at the pixel-pass budget.
        self.big.append(scan_bomb(self.big[1], 16 - sum(m == 0xDA for m, _, _ in
                                                          segments(self.big[1]))))
        self._plant_refs()

    # -- records
    def record(self, jpeg: bytes | None = None, ref: str | None = None, **fields) -> dict:
        record = {"camera_id": self.rng.choice(CAMERAS),
                  "capture_ms": self.now_ms - self.rng.randint(0, 4000),
                  "sequence": self.rng.randint(0, 1 << 40), "jpeg": jpeg, "jpeg_ref": ref,
                  "width": 0, "height": 0, "sampler_id": "fuzz"}
        record.update(fields)
        return record

    def value(self, record: dict) -> bytes:
        return self.codec.encode(record)

    def frame(self) -> bytes:
        return self.rng.choice(self.baseline)

    # -- the store, with its odd neighbours
    def _plant_refs(self) -> None:
        store, root = self.store, self.store.root
        self.good_ref = store.put("walkway", self.now_ms, 1, self.baseline[0])
        odd = root / "odd"
        odd.mkdir(parents=True, exist_ok=True)
        fifo = odd / "fifo.jpg"
        if not fifo.exists():
            os.mkfifo(fifo)
        (odd / "empty.jpg").write_bytes(b"")
        (odd / "text.jpg").write_bytes(b"not a jpeg\n" * 10)
        with open(odd / "sparse.jpg", "wb") as handle:  # 256 MiB that take no space
            handle.truncate(256 * 1024 * 1024)
        (self.outside / "secret.jpg").write_bytes(self.baseline[0])
        link = odd / "outside.jpg"
        if not link.is_symlink():
            link.symlink_to(self.outside / "secret.jpg")
        inside = odd / "inside.jpg"
        if not inside.is_symlink():
            inside.symlink_to(Path(self.good_ref.removeprefix("file://")))
        spaced = root / "walk way é"
        spaced.mkdir(exist_ok=True)
        (spaced / "frame 1.jpg").write_bytes(self.baseline[1 % len(self.baseline)])
        self.spaced_ref = (spaced / "frame 1.jpg").as_uri()
        uri = root.as_uri()
        self.odd_refs = [  # (ref, hostile)
            (uri, True), (uri + "/", True), (uri + "/walkway", True), (uri + "/odd", True),
            (uri + "/odd/fifo.jpg", True), (uri + "/odd/empty.jpg", True),
            (uri + "/odd/text.jpg", True), (uri + "/odd/sparse.jpg", True),
            (uri + "/odd/outside.jpg", True), (uri + "/odd/inside.jpg", False),
            (uri + "/walkway/\x00.jpg", True), (uri + "/walkway%00/x.jpg", True),
            (uri + "/../outside/secret.jpg", True), (uri + "/%2e%2e/outside/secret.jpg", True),
            (self.outside.as_uri() + "/secret.jpg", True), ("file:///etc/passwd", True),
            ("file:///dev/zero", True), ("file:///proc/self/environ", True),
            ("file://otherhost" + root.as_posix() + "/walkway/x.jpg", True),
            (uri + "/%ff%fe.jpg", True), (uri + "/" + "a" * 5000 + ".jpg", True),
            (uri + "/" + "a/" * 3000 + "x.jpg", True), (uri + "/walkway/x.jpg?q=1", True),
            ("s3://bucket/x.jpg", True), ("http://127.0.0.1:1/x.jpg", True), ("", True),
            ("   ", True), ("file:", True), ("file://", True), (uri + "/missing/x.jpg", True),
            (self.good_ref, False), (self.spaced_ref, False),
        ]

    # -- one input of each kind
    def valid(self) -> Case:
        return Case("valid", self.value(self.record(self.frame())), good=True)

    def valid_ref(self) -> Case:
        ref = self.rng.choice([self.good_ref, self.spaced_ref])
        return Case("valid_ref", self.value(self.record(ref=ref)), good=True)

    def big_frame(self) -> Case:
        return Case("big_4k", self.value(self.record(self.rng.choice(self.big))), good=True)

    def bit_flips(self) -> Case:
        data = bytearray(self.frame())
        for _ in range(self.rng.randint(1, 16)):
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        return Case("bit_flip", self.value(self.record(bytes(data))))

    def truncation(self) -> Case:
        data = self.frame()
        cut = data[:self.rng.randrange(len(data))]
        if self.rng.random() < 0.5:
            cut += b"\xff\xd9"  # past the EOI check: the decoder sees a short scan
        return Case("truncated", self.value(self.record(cut)))

    def marker_surgery(self) -> Case:
        data = self.rng.choice(self.baseline + self.progressive)
        parts = segments(data)
        marker, start, end = self.rng.choice(parts[:-1])
        action = self.rng.choice(("delete", "duplicate", "retype", "length", "insert", "fill"))
        if action == "delete":
            out = data[:start] + data[end:]
        elif action == "duplicate":
            out = data[:end] + data[start:end] * self.rng.randint(1, 300) + data[end:]
        elif action == "retype":
            out = data[:start + 1] + bytes([self.rng.randint(0xC0, 0xFE)]) + data[start + 2:]
        elif action == "length":
            out = data[:start + 2] + self.rng.randint(0, 0xFFFF).to_bytes(2, "big") + data[start + 4:]
        elif action == "insert":
            body = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 64)))
            out = (data[:start] + bytes([0xFF, self.rng.randint(0xC0, 0xFE)])
                   + (len(body) + 2).to_bytes(2, "big") + body + data[start:])
        else:
            out = data[:start] + b"\xff" * self.rng.randint(1, 5000) + data[start:]
        return Case(f"marker_{action}", self.value(self.record(out)))

    def progressive_frame(self) -> Case:
        return Case("progressive", self.value(self.record(self.rng.choice(self.progressive))),
                    good=True)

    def scans(self) -> Case:
        copies = self.rng.choice((40, 200, 2_000, 20_000))
        bomb = scan_bomb(self.rng.choice(self.progressive + self.big[1:2]), copies, 6 << 20)
        return Case("scan_bomb", self.value(self.record(bomb)), True)

    def arithmetic(self) -> Case:
        data = self.rng.choice(self.baseline + self.progressive)
        marker = self.rng.choice((0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
        if self.rng.random() < 0.8:
            out = with_sof(data, *jpeg_size(data), marker=marker)
        else:  # a DAC segment (arithmetic conditioning) before the frame header
            out = data[:2] + b"\xff\xcc\x00\x06\x00\x10\x01\x05" + data[2:]
        return Case("arithmetic_or_lossless", self.value(self.record(out)), True)

    def extreme_dimensions(self) -> Case:
        choice = self.rng.randrange(4)
        if choice == 0:  # header surgery on a real frame
            width, height = self.rng.choice(((1, 65500), (65500, 1), (60000, 60000), (1, 1),
                                             (65535, 126), (0, 540), (960, 0), (16384, 1)))
            out = with_sof(self.frame(), width, height)
            hostile = (width, height) != (1, 1)
            return Case("sof_dimensions", self.value(self.record(out)), hostile)
        if choice == 1:  # really encoded strips: small files, huge aspect
            shape = self.rng.choice(((16000, 1), (1, 16000), (4000, 8), (8, 4000)))
            strip = np.full((*shape, 3), 128, np.uint8)
            return Case("aspect_strip", self.value(self.record(_encode(strip))), True)
        if choice == 2:  # allowed extremes: 16:1 and tiny
            shape = self.rng.choice(((16, 256), (256, 16), (1, 1), (8, 8)))
            image = np.full((*shape, 3), 90, np.uint8)
            return Case("small_or_16to1", self.value(self.record(_encode(image))))
        width, height = jpeg_size(self.frame())
        return Case("declared_mismatch", self.value(self.record(
            self.frame(), width=self.rng.choice((width + 1, -1, 1 << 30)),
            height=height)), True)

    def odd_ref(self) -> Case:
        ref, hostile = self.rng.choice(self.odd_refs)
        return Case("odd_ref", self.value(self.record(ref=ref)), hostile)

    def avro_fields(self) -> Case:
        name = self.rng.choice(("camera_id", "capture_ms", "sequence", "width", "height",
                                "jpeg", "jpeg_ref", "sampler_id"))
        values = {
            "camera_id": ["", "x" * 100_000, "Gate", "gate\x00", "ga\u0301te", "👁" * 50],
            "capture_ms": [0, -1, -(1 << 63), (1 << 63) - 1, self.now_ms + 61_000,
                           self.now_ms - 8 * 86_400_000, self.now_ms + 5_000],
            "sequence": [-1, -(1 << 63), (1 << 63) - 1],
            "width": [-1, 1 << 31 - 1, 1, 100_000],
            "height": [-1, 1 << 31 - 1, 1, 100_000],
            "jpeg": [None, b"", b"\xff\xd8\xff\xd9", os.urandom(64)],
            "jpeg_ref": [None, "", "x" * 100_000],
            "sampler_id": [None, "", "s" * 100_000],
        }[name]
        value = self.rng.choice(values)
        record = self.record(self.frame())
        record[name] = value
        if name == "jpeg_ref" and value is not None:
            record["jpeg"] = None
        try:
            encoded = self.value(record)
        except Exception:  # noqa: BLE001 -- a value the contract cannot carry at all
            return self.valid()
        hostile = name in ("jpeg",) or (name == "jpeg_ref" and value is not None) or (
            name == "camera_id" and value not in CAMERAS) or (
            name == "capture_ms" and value != self.now_ms + 5_000) or (
            name in ("width", "height") and value != 0)
        return Case(f"avro_{name}", encoded, hostile)

    def avro_bytes(self) -> Case:
        value = bytearray(self.value(self.record(self.frame())))
        action = self.rng.choice(("flip", "truncate", "varint", "magic", "extend"))
        if action == "flip":
            for _ in range(self.rng.randint(1, 8)):
                position = self.rng.randrange(min(len(value), 200))
                value[position] ^= 1 << self.rng.randrange(8)
        elif action == "truncate":
            value = value[:self.rng.randrange(len(value))]
        elif action == "varint":  # a length or long field that claims far too much
            position = self.rng.randrange(10, min(len(value), 60))
            value[position:position] = b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f"
        elif action == "magic":
            value[:2] = self.rng.choice((b"\x00\x00", b"\xc3\x02", b"\x00\x01", b"PK"))
        else:
            value += os.urandom(self.rng.randint(1, 64))
        return Case(f"avro_{action}", bytes(value))

    def random_bytes(self) -> Case:
        size = self.rng.choice((0, 1, 9, 10, 64, 4096))
        prefix = self.rng.choice((b"", b"\xc3\x01", b"\x00"))
        return Case("random", prefix + os.urandom(size))

    KINDS = (("valid", 10), ("valid_ref", 5), ("big_frame", 1), ("bit_flips", 14),
             ("truncation", 8), ("marker_surgery", 14), ("progressive_frame", 4),
             ("scans", 3), ("arithmetic", 4), ("extreme_dimensions", 8), ("odd_ref", 8),
             ("avro_fields", 10), ("avro_bytes", 8), ("random_bytes", 3))

    def __iter__(self):
        names = [n for n, _ in self.KINDS]
        weights = [w for _, w in self.KINDS]
        while True:
            yield getattr(self, self.rng.choices(names, weights)[0])()


def jpeg_size(data: bytes) -> tuple[int, int]:
    return frames.jpeg_dimensions(data)


# --- the run -------------------------------------------------------------------------------
@dataclass
class Report:
    inputs: int = 0
    dead_letters: int = 0
    escaped: int = 0
    accepted: int = 0
    hostile_accepted: int = 0
    good_refused: int = 0
    unknown_reasons: int = 0
    over_budget: int = 0
    times: list[float] = field(default_factory=list)
    worst: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self, budget_ms: float, seed: int) -> dict:
        times = sorted(self.times) or [0.0]
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        return {"inputs": self.inputs, "dead_letters": self.dead_letters, "escaped": self.escaped,
                "max_ms": round(times[-1], 1), "p99_ms": round(p99, 1),
                "accepted": self.accepted, "hostile_accepted": self.hostile_accepted,
                "good_refused": self.good_refused,
                "unknown_reasons": self.unknown_reasons, "over_budget": self.over_budget,
                "budget_ms": budget_ms, "seed": seed, "reasons": dict(sorted(self.reasons.items())),
                "slowest": [f"{kind} {ms:.0f} ms" for ms, kind in sorted(self.worst)[-3:]],
                "failures": self.failures[:10]}

    @property
    def ok(self) -> bool:
        return not (self.escaped or self.hostile_accepted or self.good_refused
                    or self.unknown_reasons or self.over_budget)


@contextlib.contextmanager
def quiet_stderr(enabled: bool = True):
    """libjpeg's warnings ("Corrupt JPEG data ...") go straight to fd 2, thousands of them."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def fuzz(inputs: int = 10_000, seed: int = 1, budget_ms: float = DEFAULT_BUDGET_MS,
         workdir: Path | None = None, quiet: bool = True) -> Report:
    now_ms = int(time.time() * 1000)
    with tempfile.TemporaryDirectory(prefix="camflow-fuzz-") as tmp:
        source = Inputs(Path(workdir or tmp), seed, now_ms)
        pipeline = Pipeline(source.store)
        report = Report()
        with quiet_stderr(quiet):
            for case in source:
                if report.inputs >= inputs:
                    break
                outcome = pipeline.timed(case, now_ms)
                report.inputs += 1
                report.times.append(outcome.cpu_ms)
                report.worst = sorted(report.worst + [(outcome.cpu_ms, case.kind)])[-3:]
                if outcome.cpu_ms > budget_ms:
                    report.over_budget += 1
                    report.failures.append(f"{case.kind}: {outcome.cpu_ms:.0f} ms CPU")
                if outcome.verdict == "escaped":
                    report.escaped += 1
                    report.failures.append(f"{case.kind}: escaped {outcome.detail}")
                elif outcome.verdict == "dead_letter":
                    report.dead_letters += 1
                    report.reasons[outcome.reason] = report.reasons.get(outcome.reason, 0) + 1
                    if case.good:
                        report.good_refused += 1
                        report.failures.append(f"{case.kind}: refused ({outcome.reason}: "
                                               f"{outcome.detail})")
                    if outcome.reason not in KNOWN_REASONS:
                        report.unknown_reasons += 1
                        report.failures.append(f"{case.kind}: reason {outcome.reason!r}")
                else:
                    report.accepted += 1
                    if case.hostile:
                        report.hostile_accepted += 1
                        report.failures.append(f"{case.kind}: hostile input accepted")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget-ms", type=float, default=DEFAULT_BUDGET_MS,
                        help="CPU one input may cost (admit + analyse)")
    parser.add_argument("--verbose", action="store_true", help="keep libjpeg's warnings")
    args = parser.parse_args(argv)
    report = fuzz(args.inputs, args.seed, args.budget_ms, quiet=not args.verbose)
    print(json.dumps(report.summary(args.budget_ms, args.seed)), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
