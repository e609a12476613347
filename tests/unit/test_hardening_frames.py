"""Issue 16: what a frame may cost before it is decoded, and what a jpeg_ref may name.

Each test here failed on the code before the fix: a directory, NUL or FIFO jpeg_ref raised
past the dead-letter path (or blocked forever), a progressive JPEG with thousands of scans and
a 1x65500 strip were decoded, and the motion gate scaled that strip to 96 x 6,288,000."""
from __future__ import annotations

import os
import threading

import cv2
import numpy as np
import pytest

from camflow.core.frame_store import FileFrameStore
from camflow.transforms import frames
from camflow.transforms.frames import BadFrame, FrameLimits, validate
from camflow.transforms.motion import MotionGate, thumbnail

NOW_MS = 1_700_000_000_000


def jpeg(image: np.ndarray, progressive: bool = False) -> bytes:
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    ok, buffer = cv2.imencode(".jpg", image, params)
    assert ok
    return buffer.tobytes()


def scene(width: int = 64, height: int = 48) -> np.ndarray:
    rng = np.random.default_rng(3)
    return cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), np.uint8), (5, 5), 0)


def record(**overrides) -> dict:
    base = {"camera_id": "walkway", "capture_ms": NOW_MS - 1_000, "sequence": 1,
            "jpeg": jpeg(scene()), "jpeg_ref": None, "width": 0, "height": 0,
            "sampler_id": "s"}
    base.update(overrides)
    return base


def scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every scan (SOS header and entropy-coded data)."""
    out, pos = [], 2
    while data[pos + 1] != 0xD9:
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if data[pos + 1] == 0xDA:
            end = frames._NEXT_MARKER.search(data, end).start()
            out.append((pos, end))
        pos = end
    return out


def scan_bomb(progressive: bytes, copies: int) -> bytes:
    start, end = min(scans(progressive), key=lambda se: se[1] - se[0])
    return progressive[:end] + progressive[start:end] * copies + progressive[end:]


@pytest.fixture
def decoder_must_not_run(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("cv2.imdecode called on a frame that should be refused first")

    monkeypatch.setattr(frames.cv2, "imdecode", refuse)


# --- jpeg_ref: a regular file inside the store, read with a bound --------------------------
@pytest.fixture
def store(tmp_path):
    store = FileFrameStore(tmp_path / "frames")
    store.put("walkway", NOW_MS, 1, jpeg(scene()))
    return store


@pytest.mark.parametrize("suffix", ["", "/", "/walkway", "/walkway/"])
def test_jpeg_ref_naming_a_directory_is_a_dead_letter(store, suffix):
    ref = store.url + suffix
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=None, jpeg_ref=ref), NOW_MS, resolve_jpeg_ref=store.get)
    assert excinfo.value.reason_code == "missing_image"


@pytest.mark.parametrize("ref_tail", ["/walkway/\x00.jpg", "/walkway%00/x.jpg", "/%ff.jpg"])
def test_jpeg_ref_with_a_nul_byte_or_bad_encoding_is_a_dead_letter(store, ref_tail):
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=None, jpeg_ref=store.url + ref_tail), NOW_MS,
                 resolve_jpeg_ref=store.get)
    assert excinfo.value.reason_code in ("missing_image", "malformed_record")


def test_a_fifo_in_the_store_does_not_block_the_read(store):
    fifo = store.root / "walkway" / "0000000000001-1.jpg"
    os.mkfifo(fifo)
    outcome = []

    def read():
        try:
            validate(record(jpeg=None, jpeg_ref=fifo.as_uri()), NOW_MS, resolve_jpeg_ref=store.get)
        except BadFrame as exc:
            outcome.append(exc.reason_code)
        except Exception as exc:  # noqa: BLE001
            outcome.append(repr(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO jpeg_ref blocked"
    assert outcome == ["missing_image"]


def test_a_frame_file_over_the_byte_limit_is_not_read_whole(store):
    big = store.root / "walkway" / "0000000000002-2.jpg"
    with open(big, "wb") as handle:
        handle.truncate(64 * 1024 * 1024 + 1)  # sparse: over the store's hard bound too
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=None, jpeg_ref=big.as_uri()), NOW_MS,
                 resolve_jpeg_ref=lambda ref: store.get(ref, max_bytes=4 * 1024 * 1024))
    assert excinfo.value.reason_code == "oversize_frame"
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=None, jpeg_ref=big.as_uri()), NOW_MS, resolve_jpeg_ref=store.get)
    assert excinfo.value.reason_code == "oversize_frame"


def test_a_transient_store_error_still_propagates(store):
    def broken(ref):
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError):
        validate(record(jpeg=None, jpeg_ref=store.url + "/walkway/x.jpg"), NOW_MS,
                 resolve_jpeg_ref=broken)


def test_a_jpeg_ref_that_is_no_reference_is_refused_before_the_store(store):
    def must_not_be_called(ref):
        raise AssertionError("store asked for " + ref[:40])

    for ref in ("x" * 5000, store.url + "/walkway/\x00x.jpg", "a\nb"):
        with pytest.raises(BadFrame) as excinfo:
            validate(record(jpeg=None, jpeg_ref=ref), NOW_MS, resolve_jpeg_ref=must_not_be_called)
        assert excinfo.value.reason_code == "malformed_record"
        assert len(excinfo.value.message) < 400


# --- decoder work: scans, pixel passes, aspect ratio, JPEG process --------------------------
def test_progressive_scan_bomb_is_refused_before_decoding(decoder_must_not_run):
    progressive = jpeg(scene(), progressive=True)
    bomb = scan_bomb(progressive, 2_000)
    assert len(bomb) < 4 * 1024 * 1024
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=bomb), NOW_MS)
    assert excinfo.value.reason_code == "decode_budget"
    assert "scans" in excinfo.value.message


def test_scan_count_limit_and_pixel_passes():
    progressive = jpeg(scene(), progressive=True)
    count = len(scans(progressive))
    assert count < 32
    exactly = scan_bomb(progressive, 32 - count)
    assert validate(record(jpeg=exactly), NOW_MS).image.shape == (48, 64, 3)
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=scan_bomb(progressive, 33 - count)), NOW_MS)
    assert excinfo.value.reason_code == "decode_budget"
    # pixels x scans: a frame as large as max_pixels gets max_pixel_passes scans
    limits = FrameLimits(max_pixels=64 * 48, max_pixel_passes=count + 1)
    assert validate(record(jpeg=scan_bomb(progressive, 1)), NOW_MS, limits).width == 64
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=scan_bomb(progressive, 2)), NOW_MS, limits)
    assert excinfo.value.reason_code == "decode_budget"


def test_aspect_ratio_bomb_is_refused_before_decoding(decoder_must_not_run):
    strip = np.full((65500, 1, 3), 128, np.uint8)
    data = jpeg(strip)
    assert len(data) < 64 * 1024  # small file, under the pixel limit
    assert 65500 <= FrameLimits().max_pixels
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=data), NOW_MS)
    assert excinfo.value.reason_code == "decode_budget"
    assert "aspect" in excinfo.value.message


def test_an_allowed_aspect_ratio_still_decodes():
    wide = np.full((16, 256, 3), 100, np.uint8)
    assert validate(record(jpeg=jpeg(wide)), NOW_MS).image.shape == (16, 256, 3)


def test_motion_gate_thumbnail_is_bounded_whatever_the_aspect():
    for shape in ((4000, 1, 3), (1, 4000, 3), (100, 1, 3)):
        thumb = thumbnail(np.zeros(shape, np.uint8), 96)
        assert thumb.shape[0] <= 4 * 96 and thumb.shape[1] <= 96
    normal = thumbnail(np.zeros((540, 960, 3), np.uint8), 96)
    assert normal.shape == (54, 96)  # unchanged for camera frames
    portrait = thumbnail(np.zeros((1920, 1080, 3), np.uint8), 96)
    assert portrait.shape == (171, 96)
    decision = MotionGate().decide(None, np.zeros((4000, 1, 3), np.uint8), NOW_MS)
    assert len(decision.state["candidate"]) <= 4 * 96 * 96


@pytest.mark.parametrize("marker", [0xC3, 0xC5, 0xC9, 0xCA, 0xCB, 0xCD])
def test_arithmetic_lossless_and_hierarchical_jpegs_are_not_decoded(decoder_must_not_run, marker):
    data = bytearray(jpeg(scene()))
    data[data.index(b"\xff\xc0") + 1] = marker
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=bytes(data)), NOW_MS)
    assert excinfo.value.reason_code == "unsupported_jpeg"


def test_twelve_bit_precision_is_not_decoded(decoder_must_not_run):
    data = bytearray(jpeg(scene()))
    data[data.index(b"\xff\xc0") + 4] = 12
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=bytes(data)), NOW_MS)
    assert excinfo.value.reason_code == "unsupported_jpeg"


def test_too_many_marker_segments_are_refused(decoder_must_not_run):
    data = jpeg(scene())
    padding = b"\xff\xfe\x00\x04ab" * 600  # 600 comment segments
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=data[:2] + padding + data[2:]), NOW_MS)
    assert excinfo.value.reason_code == "decode_budget"


def test_new_reason_codes_are_known_and_pickle():
    import pickle

    for code in ("unsupported_jpeg", "decode_budget"):
        assert code in frames.REASON_CODES
        restored = pickle.loads(pickle.dumps(BadFrame(code, "x")))
        assert restored.reason_code == code
