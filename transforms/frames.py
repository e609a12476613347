"""From a FrameSample record to a decoded ``FrameAnalysis``, or a ``BadFrame`` with a reason.

Everything here is a pure function of its arguments: the current time comes in as ``now_ms``
(the job passes processing time or the watermark), so the same record always gets the same
verdict and replays after a failover route the same frames to the dead-letter topic.

Checks run cheapest first and the expensive one, the full JPEG decode, runs last and only after
the JPEG's own structure has been walked without decoding a pixel: a few hundred bytes can
declare a 60000x60000 frame, and decoding it would allocate gigabytes (a decompression bomb);
a 17 KB 1x65500 frame passes any pixel limit but is a bomb for everything that scales it to a
fixed width (an aspect-ratio bomb); and a progressive JPEG can hold thousands of tiny scans,
each of which makes the decoder pass over the whole image again (a scan bomb: 4 MiB of them
cost minutes of CPU). So the decoder's work is bounded before it starts: pixels, aspect ratio,
scan count, pixels x scans, marker segments; and only the JPEG processes cameras produce
(baseline, extended sequential and progressive Huffman, 8-bit) are decoded at all.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .detections import FrameAnalysis

# Reason codes: stable strings, written to the dead-letter topic and counted in metrics.
CORRUPT_JPEG = "corrupt_jpeg"
OVERSIZE_FRAME = "oversize_frame"
DIMENSION_MISMATCH = "dimension_mismatch"
UNKNOWN_CAMERA = "unknown_camera"
LATE_TIMESTAMP = "late_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
MISSING_IMAGE = "missing_image"
MALFORMED_RECORD = "malformed_record"
# Arithmetic coding, lossless, hierarchical, 12/16-bit: legal JPEG, never from a camera.
UNSUPPORTED_JPEG = "unsupported_jpeg"
# More decoder work than a frame may cost: too many scans or pixel passes, extreme aspect ratio.
DECODE_BUDGET = "decode_budget"
REASON_CODES = frozenset({
    CORRUPT_JPEG, OVERSIZE_FRAME, DIMENSION_MISMATCH, UNKNOWN_CAMERA, LATE_TIMESTAMP,
    FUTURE_TIMESTAMP, MISSING_IMAGE, MALFORMED_RECORD, UNSUPPORTED_JPEG, DECODE_BUDGET,
})
# A claim-check reference is a short URL; anything longer or with control characters is not one.
MAX_REF_CHARS = 2048


class BadFrame(ValueError):
    """A frame the job refuses; ``reason_code`` is one of ``REASON_CODES``.

    Both values go into ``args`` so the exception pickles (PyFlink ships exceptions between
    the Python worker and the JVM).
    """

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(reason_code, message)
        self.reason_code = reason_code
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason_code}: {self.message}"


class FrameLimits(BaseModel):
    """What a frame may weigh, how much decoder work it may cost, and how far its timestamp
    may stray from ``now_ms``.

    Decoder work: a progressive JPEG is decoded scan by scan, each scan a pass over the whole
    coefficient buffer, so the cost grows with pixels x scans, not with bytes. ``max_scans``
    bounds the count (libjpeg's progressive script writes 10 for colour, 6 for grey; mozjpeg
    about as many) and ``max_pixel_passes`` the product, in frames of ``max_pixels``: at the
    defaults a 3840x2160 frame may have 16 scans, a 1920x1080 one 32. ``max_aspect_ratio``
    (longer side / shorter side) refuses strips like 1x65500 that pass the pixel limit but
    blow up whatever scales frames to a fixed width (panoramic cameras reach about 8).
    """


    model_config = ConfigDict(extra="forbid", frozen=True)

    max_jpeg_bytes: int = Field(4 * 1024 * 1024, ge=1, description="larger JPEGs are dead letters")
    max_pixels: int = Field(3840 * 2160, ge=1, description=(
        "larger frames are dead letters (read from the header, before decoding)"))
    max_future_skew_ms: int = Field(5_000, ge=0, description=(
        "capture times further ahead of the clock are dead letters; at most the job's "
        "out_of_orderness_ms, or one fast camera's frames would make the others' late"))
    max_age_ms: int = Field(7 * 24 * 3600 * 1000, ge=0, description="older capture times are dead letters")
    max_scans: int = Field(32, ge=1, description="scans of a progressive JPEG (a real one has 6-10)")
    max_pixel_passes: float = Field(16.0, gt=0, description=(
        "pixels x scans, in frames of max_pixels: bounds a progressive JPEG's decoding work"))
    max_aspect_ratio: float = Field(16.0, ge=1, description=(
        "longer side / shorter side (panoramic cameras reach about 8)"))
    max_segments: int = Field(512, ge=16, description="marker segments in one JPEG (a real one has 10-80)")


DEFAULT_LIMITS = FrameLimits()

# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG extension) and CC (DAC) share the range
# but are not frame headers.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field.
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8, 0xD9}
_SOS = 0xDA


def jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's first SOF segment, without decoding any pixels.

    Walks the marker segments from SOI up to SOS (the frame header must precede the first scan).
    Raises ``BadFrame(corrupt_jpeg)`` when the structure is broken or no frame header is found.
    """
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise BadFrame(CORRUPT_JPEG, "no JPEG SOI marker at start")
    pos = 2
    end = len(data)
    while pos < end:
        if data[pos] != 0xFF:
            raise BadFrame(CORRUPT_JPEG, f"expected a marker at byte {pos}")
        # Any number of 0xFF fill bytes may precede a marker code.
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker == _SOS:
            raise BadFrame(CORRUPT_JPEG, "scan data starts before any frame header (SOF)")
        if pos + 2 > end:
            break
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > end:
            raise BadFrame(CORRUPT_JPEG, f"segment 0xFF{marker:02X} runs past the end")
        if marker in _SOF_MARKERS:
            if length < 8:
                raise BadFrame(CORRUPT_JPEG, "frame header (SOF) too short")
            height = (data[pos + 3] << 8) | data[pos + 4]
            width = (data[pos + 5] << 8) | data[pos + 6]
            if width == 0 or height == 0:
                # Height 0 means "defined later by a DNL marker": legal but never produced by
                # cameras or our sampler, and it would hide the size from this check.
                raise BadFrame(CORRUPT_JPEG, f"frame header declares {width}x{height}")
            return width, height
        pos += length
    raise BadFrame(CORRUPT_JPEG, "no frame header (SOF) before end of data")


def check_timestamp(capture_ms: int, now_ms: int, limits: FrameLimits = DEFAULT_LIMITS) -> None:
    """Raise ``BadFrame`` when ``capture_ms`` is older than ``max_age_ms`` or too far ahead."""
    if now_ms - capture_ms > limits.max_age_ms:
        raise BadFrame(
            LATE_TIMESTAMP,
            f"captured {now_ms - capture_ms} ms before now, limit {limits.max_age_ms} ms",
        )
    if capture_ms - now_ms > limits.max_future_skew_ms:
        raise BadFrame(
            FUTURE_TIMESTAMP,
            f"captured {capture_ms - now_ms} ms after now, limit {limits.max_future_skew_ms} ms",
        )


@dataclass(frozen=True)
class JpegInfo:
    """What the marker walk found: the frame header and the work the decoder faces."""

    width: int
    height: int
    sof: int  # the SOF marker code: 0xC0 baseline, 0xC1 extended, 0xC2 progressive
    components: int
    scans: int
    segments: int


_SUPPORTED_SOF = frozenset({0xC0, 0xC1, 0xC2})
_SOF_NAMES = {0xC3: "lossless", 0xC5: "hierarchical", 0xC6: "hierarchical progressive",
              0xC7: "hierarchical lossless", 0xC9: "arithmetic-coded",
              0xCA: "arithmetic-coded progressive", 0xCB: "arithmetic-coded lossless",
              0xCD: "hierarchical arithmetic-coded", 0xCE: "hierarchical arithmetic-coded progressive",
              0xCF: "hierarchical arithmetic-coded lossless"}
_DAC, _DHP, _EOI = 0xCC, 0xDE, 0xD9
# Where entropy-coded data ends: 0xFF followed by anything but a stuffed zero, a restart
# marker or another fill 0xFF.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def inspect_jpeg(data: bytes, limits: FrameLimits = DEFAULT_LIMITS) -> JpegInfo:
    """Walk every marker segment from SOI to EOI, skipping entropy-coded data, and refuse
    before any decoding what the decoder should not be given (see ``FrameLimits``).

    The frame header's limits are checked the moment it is read (a bomb is refused as
    ``oversize_frame`` / ``decode_budget`` even when what follows is broken); the scan count
    as each scan is found, so a scan bomb costs one regex search per allowed scan.
    """
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise BadFrame(CORRUPT_JPEG, "no JPEG SOI marker at start")
    pos, end = 2, len(data)
    header: tuple[int, int, int, int] | None = None  # width, height, sof, components
    scans = segments = 0
    while pos < end:
        if data[pos] != 0xFF:
            if not scans:
                raise BadFrame(CORRUPT_JPEG, f"expected a marker at byte {pos}")
            # After the first scan libjpeg skips stray bytes to the next marker; so do we.
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
        # Any number of 0xFF fill bytes may precede a marker code.
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        segments += 1
        if segments > limits.max_segments:
            raise BadFrame(DECODE_BUDGET, f"more than {limits.max_segments} marker segments")
        if marker == _EOI:
            break
        if marker in _STANDALONE_MARKERS:
            continue
        if marker == _SOS and header is None:
            raise BadFrame(CORRUPT_JPEG, "scan data starts before any frame header (SOF)")
        if pos + 2 > end:
            break
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > end:
            raise BadFrame(CORRUPT_JPEG, f"segment 0xFF{marker:02X} runs past the end")
        if marker in _SOF_MARKERS:
            if header is not None:
                raise BadFrame(CORRUPT_JPEG, "a second frame header (SOF)")
            header = _frame_header(data, pos, length, marker, limits)
        elif marker in (_DAC, _DHP):
            raise BadFrame(UNSUPPORTED_JPEG, "arithmetic-coded or hierarchical JPEG "
                           f"(marker 0xFF{marker:02X}); cameras send baseline or progressive")
        pos += length
        if marker == _SOS:
            scans += 1
            width, height = header[0], header[1]
            if scans > limits.max_scans:
                raise BadFrame(DECODE_BUDGET, f"more than {limits.max_scans} scans "
                               "(progressive scan bomb?)")
            if width * height * scans > limits.max_pixels * limits.max_pixel_passes:
                raise BadFrame(DECODE_BUDGET, f"{scans} scans over {width}x{height} pixels: "
                               f"more than {limits.max_pixel_passes:g} passes over "
                               f"{limits.max_pixels} pixels")
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                raise BadFrame(CORRUPT_JPEG, "scan data runs to the end without EOI")
            pos = found.start()
    if header is None:
        raise BadFrame(CORRUPT_JPEG, "no frame header (SOF) before end of data")
    if not scans:
        raise BadFrame(CORRUPT_JPEG, "no scan (SOS) in the JPEG")
    width, height, sof, components = header
    return JpegInfo(width, height, sof, components, scans, segments)


def _frame_header(data: bytes, pos: int, length: int, marker: int,
                  limits: FrameLimits) -> tuple[int, int, int, int]:
    if length < 8:
        raise BadFrame(CORRUPT_JPEG, "frame header (SOF) too short")
    precision = data[pos + 2]
    height = (data[pos + 3] << 8) | data[pos + 4]
    width = (data[pos + 5] << 8) | data[pos + 6]
    components = data[pos + 7]
    if width == 0 or height == 0:
        # Height 0 means "defined later by a DNL marker": legal but never produced by
        # cameras or our sampler, and it would hide the size from this check.
        raise BadFrame(CORRUPT_JPEG, f"frame header declares {width}x{height}")
    if width * height > limits.max_pixels:
        raise BadFrame(OVERSIZE_FRAME, f"header declares {width}x{height} = {width * height} "
                       f"pixels, limit {limits.max_pixels}")
    if max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise BadFrame(DECODE_BUDGET, f"header declares {width}x{height}: aspect ratio over "
                       f"{limits.max_aspect_ratio:g}")
    if marker not in _SUPPORTED_SOF:
        raise BadFrame(UNSUPPORTED_JPEG, f"{_SOF_NAMES.get(marker, 'unknown')} JPEG "
                       f"(SOF 0xFF{marker:02X}); cameras send baseline or progressive")
    if precision != 8:
        raise BadFrame(UNSUPPORTED_JPEG, f"{precision}-bit samples; only 8-bit JPEGs are decoded")
    if components not in (1, 3, 4) or length != 8 + 3 * components:
        raise BadFrame(CORRUPT_JPEG, f"frame header with {components} components in "
                       f"{length} bytes")
    return width, height, marker, components


def check_jpeg(data: bytes, limits: FrameLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """(width, height) of a JPEG that passed every check short of decoding it.

    Refuses: more bytes than ``max_jpeg_bytes``; no SOI/EOI marker; broken marker segments;
    more header-declared pixels than ``max_pixels`` (the decompression-bomb check); an extreme
    aspect ratio, too many scans or pixel passes (``decode_budget``); JPEG processes cameras do
    not use (``unsupported_jpeg``).
    """
    if len(data) > limits.max_jpeg_bytes:
        raise BadFrame(
            OVERSIZE_FRAME, f"{len(data)} bytes, limit {limits.max_jpeg_bytes} bytes"
        )
    # Truncated JPEGs often still decode (libjpeg fills the missing rows with grey), so the
    # EOI marker is the only reliable sign that the whole frame arrived. Some encoders pad
    # after EOI with zeros, which is harmless.
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise BadFrame(CORRUPT_JPEG, "no JPEG EOI marker at end (truncated?)")
    info = inspect_jpeg(data, limits)
    return info.width, info.height


def _decode_checked(data: bytes, width: int, height: int) -> np.ndarray:
    try:
        # IGNORE_ORIENTATION: decode the pixels as stored, so the shape matches the SOF header
        # (and the sampler's declared size) instead of being rotated by an EXIF tag.
        image = cv2.imdecode(
            np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        )
    except cv2.error as error:
        raise BadFrame(CORRUPT_JPEG, f"decoder error: {error}") from None
    if image is None:
        raise BadFrame(CORRUPT_JPEG, "decoder could not read the JPEG")
    if image.shape[1] != width or image.shape[0] != height:
        raise BadFrame(
            CORRUPT_JPEG,
            f"decoded {image.shape[1]}x{image.shape[0]}, header declares {width}x{height}",
        )
    return image


def decode_jpeg(data: bytes, limits: FrameLimits = DEFAULT_LIMITS) -> np.ndarray:
    """BGR uint8 image [H, W, 3] from JPEG bytes; ``check_jpeg`` runs first."""
    width, height = check_jpeg(data, limits)
    return _decode_checked(data, width, height)


def _short(text: str, limit: int = 120) -> str:
    """``repr`` of outside text, cut to ``limit`` chars: messages go into dead letters and logs."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"...({len(text)} chars)"


def _resolve(resolve_jpeg_ref: Callable[[str], bytes | None], jpeg_ref: str) -> bytes | None:
    try:
        return resolve_jpeg_ref(jpeg_ref)
    except BadFrame:
        raise
    except Exception as exc:  # noqa: BLE001 -- sorted below: the record's fault, or transient
        reason = getattr(exc, "reason_code", None)
        if reason in REASON_CODES:
            raise BadFrame(reason, str(exc)) from None
        raise


def _field(record: Mapping[str, Any], name: str, kinds: type | tuple[type, ...]) -> Any:
    value = record.get(name)
    # bool is an int subclass; a True capture_ms is a producer bug, not a timestamp.
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise BadFrame(MALFORMED_RECORD, f"field {name!r} is {type(value).__name__}")
    return value


def validate(
    record: Mapping[str, Any],
    now_ms: int,
    limits: FrameLimits = DEFAULT_LIMITS,
    known_cameras: Collection[str] | None = None,
    resolve_jpeg_ref: Callable[[str], bytes | None] | None = None,
) -> FrameAnalysis:
    """A decoded ``FrameAnalysis`` from a FrameSample record, or ``BadFrame`` saying why not.

    record: camera_id, capture_ms, sequence, jpeg (bytes|None), jpeg_ref (str|None), width,
    height, sampler_id. ``known_cameras``: when given, other camera ids are refused.
    ``resolve_jpeg_ref``: fetches the bytes of a claim-checked image (``jpeg_ref``); None or a
    None result means ``missing_image``. An exception of its that carries a ``reason_code``
    of ``REASON_CODES`` (``BadFrame``, the frame store's ``FrameRefError``) is the record's
    fault: a ``BadFrame`` with that reason. Any other propagates unchanged on purpose: a
    store outage is transient and should fail the task (and be retried), not dead-letter frames.
    A ``jpeg_ref`` that is no plausible reference (too long, control characters such as NUL)
    is refused before the store sees it.

    Declared width/height must equal the decoded size exactly, except that 0 means "not
    declared". Detection boxes are pixel coordinates of the decoded image, and the sampler
    declares the size of the image it encoded, so any difference means the record's metadata
    is wrong and downstream geometry (zones, lines) would be mis-scaled.
    """
    if not isinstance(record, Mapping):
        raise BadFrame(MALFORMED_RECORD, f"record is {type(record).__name__}, not a mapping")
    camera_id = _field(record, "camera_id", str)
    capture_ms = _field(record, "capture_ms", int)
    sequence = _field(record, "sequence", int)
    declared_width = _field(record, "width", int)
    declared_height = _field(record, "height", int)
    sampler_id = record.get("sampler_id") or ""
    if not isinstance(sampler_id, str):
        raise BadFrame(MALFORMED_RECORD, f"field 'sampler_id' is {type(sampler_id).__name__}")

    if known_cameras is not None and camera_id not in known_cameras:
        raise BadFrame(UNKNOWN_CAMERA, f"camera {_short(camera_id)} is not configured")
    check_timestamp(capture_ms, now_ms, limits)

    jpeg = record.get("jpeg")
    jpeg_ref = record.get("jpeg_ref")
    if jpeg is None and jpeg_ref is not None:
        if not isinstance(jpeg_ref, str):
            raise BadFrame(MALFORMED_RECORD, f"field 'jpeg_ref' is {type(jpeg_ref).__name__}")
        if len(jpeg_ref) > MAX_REF_CHARS or any(ord(c) < 0x20 or c == "\x7f" for c in jpeg_ref):
            raise BadFrame(MALFORMED_RECORD, f"jpeg_ref {_short(jpeg_ref)} is not a reference "
                           f"(over {MAX_REF_CHARS} chars or control characters)")
        if resolve_jpeg_ref is None:
            raise BadFrame(MISSING_IMAGE, f"jpeg_ref {_short(jpeg_ref)} given but no store to read it")
        jpeg = _resolve(resolve_jpeg_ref, jpeg_ref) if jpeg_ref else None
        if jpeg is None:
            raise BadFrame(MISSING_IMAGE, f"jpeg_ref {_short(jpeg_ref)} not found")
    if jpeg is None:
        raise BadFrame(MISSING_IMAGE, "neither jpeg bytes nor a jpeg_ref")
    if not isinstance(jpeg, (bytes, bytearray, memoryview)):
        raise BadFrame(MALFORMED_RECORD, f"field 'jpeg' is {type(jpeg).__name__}")
    if len(jpeg) == 0:
        raise BadFrame(MISSING_IMAGE, "jpeg is empty")
    jpeg = bytes(jpeg)

    header_width, header_height = check_jpeg(jpeg, limits)
    # Checked against the header before decoding (cheaper); the decoder's output shape is then
    # checked against the header.
    if (declared_width, declared_height) != (0, 0) and (
        declared_width != header_width or declared_height != header_height
    ):
        raise BadFrame(
            DIMENSION_MISMATCH,
            f"record declares {declared_width}x{declared_height}, "
            f"JPEG is {header_width}x{header_height}",
        )
    image = _decode_checked(jpeg, header_width, header_height)
    return FrameAnalysis(
        camera_id=camera_id,
        capture_ms=capture_ms,
        sequence=sequence,
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        jpeg=jpeg,
        sampler_id=sampler_id,
        jpeg_ref=jpeg_ref if record.get("jpeg") is None else None,
        image=image,
    )


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """Baseline JPEG bytes of a BGR (or grey) uint8 image."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {quality}")
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"cv2.imencode failed for image of shape {image.shape}")
    return buffer.tobytes()


def resize_to_max_width(image: np.ndarray, max_width: int) -> np.ndarray:
    """The image scaled down (aspect kept) so its width is at most ``max_width``; never upscaled."""
    if max_width < 1:
        raise ValueError(f"max_width must be positive, got {max_width}")
    height, width = image.shape[:2]
    if width <= max_width:
        return image
    new_height = max(1, round(height * max_width / width))
    # INTER_AREA averages source pixels: the standard choice for downscaling without aliasing.
    return cv2.resize(image, (max_width, new_height), interpolation=cv2.INTER_AREA)
