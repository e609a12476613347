import pickle

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camflow.transforms import frames
from camflow.transforms.frames import (
    BadFrame,
    FrameLimits,
    check_timestamp,
    decode_jpeg,
    encode_jpeg,
    jpeg_dimensions,
    resize_to_max_width,
    validate,
)

NOW_MS = 1_700_000_000_000


def gradient_image(width: int = 40, height: int = 30) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 0] = x
    image[:, :, 1] = x[::-1]
    image[:, :, 2] = 128
    return image


JPEG_40x30 = encode_jpeg(gradient_image(), quality=90)


def record(**overrides):
    base = {
        "camera_id": "cam-1",
        "capture_ms": NOW_MS - 1_000,
        "sequence": 7,
        "jpeg": JPEG_40x30,
        "jpeg_ref": None,
        "width": 40,
        "height": 30,
        "sampler_id": "sampler-a",
    }
    base.update(overrides)
    return base


def reason(excinfo) -> str:
    return excinfo.value.reason_code


def with_sof_dimensions(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its SOF0 header rewritten to declare width x height."""
    sof = jpeg.index(b"\xff\xc0")
    # FFC0, length(2), precision(1), height(2), width(2)
    patched = bytearray(jpeg)
    patched[sof + 5:sof + 7] = height.to_bytes(2, "big")
    patched[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(patched)


# --- the happy path -----------------------------------------------------------------------


def test_valid_record_becomes_decoded_frame_analysis():
    analysis = validate(record(), NOW_MS)
    assert analysis.camera_id == "cam-1"
    assert analysis.capture_ms == NOW_MS - 1_000
    assert analysis.sequence == 7
    assert analysis.sampler_id == "sampler-a"
    assert (analysis.width, analysis.height) == (40, 30)
    assert analysis.jpeg == JPEG_40x30
    assert analysis.image.shape == (30, 40, 3)
    assert analysis.image.dtype == np.uint8
    assert len(analysis.detections) == 0
    # Lossy, but close to the source.
    assert np.abs(analysis.image.astype(int) - gradient_image().astype(int)).mean() < 4


def test_undeclared_dimensions_take_the_decoded_size():
    analysis = validate(record(width=0, height=0), NOW_MS)
    assert (analysis.width, analysis.height) == (40, 30)


def test_jpeg_ref_is_resolved_through_the_given_store():
    store = {"s3://frames/cam-1/7.jpg": JPEG_40x30}
    analysis = validate(
        record(jpeg=None, jpeg_ref="s3://frames/cam-1/7.jpg"), NOW_MS, resolve_jpeg_ref=store.get
    )
    assert analysis.image.shape == (30, 40, 3)
    assert analysis.jpeg_ref == "s3://frames/cam-1/7.jpg"  # carried on instead of the bytes
    inline = validate(record(jpeg=JPEG_40x30), NOW_MS)
    assert inline.jpeg_ref is None


def test_trailing_zero_padding_after_eoi_is_accepted():
    analysis = validate(record(jpeg=JPEG_40x30 + b"\x00" * 16), NOW_MS)
    assert analysis.image.shape == (30, 40, 3)


def test_progressive_jpeg_dimensions_come_from_sof2():
    ok, buffer = cv2.imencode(".jpg", gradient_image(64, 48), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    progressive = buffer.tobytes()
    assert b"\xff\xc2" in progressive
    assert jpeg_dimensions(progressive) == (64, 48)
    assert validate(record(jpeg=progressive, width=64, height=48), NOW_MS).image.shape == (48, 64, 3)


# --- corrupt input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "jpeg",
    [
        pytest.param(b"not a jpeg at all", id="text"),
        pytest.param(JPEG_40x30[: len(JPEG_40x30) // 2], id="truncated-half"),
        pytest.param(JPEG_40x30[:-2], id="truncated-eoi"),
        pytest.param(b"\xff\xd8\xff\xd9", id="soi-eoi-only"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + JPEG_40x30[8:], id="png-magic"),
        pytest.param(JPEG_40x30[:2] + b"\xff\xe0\xff\xff" + JPEG_40x30[6:], id="segment-overrun"),
    ],
)
def test_corrupt_jpeg_is_refused(jpeg):
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=jpeg, width=0, height=0), NOW_MS)
    assert reason(excinfo) == "corrupt_jpeg"


def test_scan_before_frame_header_is_corrupt():
    sos_first = b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00" * 8 + b"\xff\xd9"
    with pytest.raises(BadFrame) as excinfo:
        jpeg_dimensions(sos_first)
    assert reason(excinfo) == "corrupt_jpeg"


def test_corrupt_entropy_data_with_intact_markers_is_refused_or_decodes_to_declared_size():
    # Zeroing the scan data keeps every marker intact; libjpeg may still produce an image.
    # Either outcome is fine, as long as it is one of the two.
    sos = JPEG_40x30.index(b"\xff\xda")
    length = int.from_bytes(JPEG_40x30[sos + 2:sos + 4], "big")
    start = sos + 2 + length
    damaged = JPEG_40x30[:start] + b"\x00" * (len(JPEG_40x30) - start - 2) + b"\xff\xd9"
    try:
        assert validate(record(jpeg=damaged), NOW_MS).image.shape == (30, 40, 3)
    except BadFrame as error:
        assert error.reason_code == "corrupt_jpeg"


# --- size limits and decompression bombs ---------------------------------------------------


def test_jpeg_over_byte_limit_is_oversize():
    limits = FrameLimits(max_jpeg_bytes=len(JPEG_40x30) - 1)
    with pytest.raises(BadFrame) as excinfo:
        validate(record(), NOW_MS, limits=limits)
    assert reason(excinfo) == "oversize_frame"
    assert validate(record(), NOW_MS, limits=FrameLimits(max_jpeg_bytes=len(JPEG_40x30))).width == 40


def test_pixel_limit_is_inclusive():
    assert validate(record(), NOW_MS, limits=FrameLimits(max_pixels=1200)).width == 40
    with pytest.raises(BadFrame) as excinfo:
        validate(record(), NOW_MS, limits=FrameLimits(max_pixels=1199))
    assert reason(excinfo) == "oversize_frame"


@pytest.fixture
def decoder_must_not_run(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("cv2.imdecode called on a frame that should be refused first")

    monkeypatch.setattr(frames.cv2, "imdecode", refuse)


def test_handcrafted_bomb_header_is_refused_before_decode(decoder_must_not_run):
    # 23 bytes: SOI, a baseline SOF0 declaring 60000 x 60000 x 3 components, EOI.
    # Decoded it would need 60000 * 60000 * 3 bytes = 10.8 GB.
    sof0 = (
        b"\xff\xc0\x00\x11\x08"  # marker, length 17, 8-bit precision
        + (60000).to_bytes(2, "big")  # height
        + (60000).to_bytes(2, "big")  # width
        + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"  # 3 components
    )
    bomb = b"\xff\xd8" + sof0 + b"\xff\xd9"
    assert len(bomb) == 23
    assert jpeg_dimensions(bomb) == (60000, 60000)
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=bomb, width=60000, height=60000), NOW_MS)
    assert reason(excinfo) == "oversize_frame"
    assert "60000x60000" in excinfo.value.message


def test_real_jpeg_with_bomb_header_is_refused_before_decode(decoder_must_not_run):
    bomb = with_sof_dimensions(JPEG_40x30, 60000, 60000)
    assert len(bomb) < 1000
    with pytest.raises(BadFrame) as excinfo:
        decode_jpeg(bomb)
    assert reason(excinfo) == "oversize_frame"
    # The dimension check against the record never gets the chance to run first.
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=bomb), NOW_MS)
    assert reason(excinfo) == "oversize_frame"


def test_header_size_that_decoder_disagrees_with_is_corrupt():
    # A header claiming 41x30 over data for 40x30 passes the pre-decode checks; libjpeg either
    # fails or decodes 41x30. Both must end as corrupt_jpeg or a 41x30 image, never a crash.
    lying = with_sof_dimensions(JPEG_40x30, 41, 30)
    try:
        assert decode_jpeg(lying).shape == (30, 41, 3)
    except BadFrame as error:
        assert error.reason_code == "corrupt_jpeg"


# --- record-level checks -------------------------------------------------------------------


def test_declared_dimensions_must_match_the_jpeg():
    with pytest.raises(BadFrame) as excinfo:
        validate(record(width=30, height=40), NOW_MS)
    assert reason(excinfo) == "dimension_mismatch"
    assert "30x40" in excinfo.value.message and "40x30" in excinfo.value.message


def test_unknown_camera_is_refused_only_when_cameras_are_known():
    with pytest.raises(BadFrame) as excinfo:
        validate(record(camera_id="cam-9"), NOW_MS, known_cameras={"cam-1", "cam-2"})
    assert reason(excinfo) == "unknown_camera"
    assert validate(record(), NOW_MS, known_cameras={"cam-1"}).camera_id == "cam-1"
    assert validate(record(camera_id="cam-9"), NOW_MS).camera_id == "cam-9"


@pytest.mark.parametrize(
    "jpeg, jpeg_ref, store, expected",
    [
        (None, None, None, "missing_image"),
        (b"", None, None, "missing_image"),
        (None, "s3://frames/gone.jpg", None, "missing_image"),
        (None, "s3://frames/gone.jpg", {}, "missing_image"),
        (None, "", {}, "missing_image"),
        ("a string", None, None, "malformed_record"),
        (None, 42, {}, "malformed_record"),
    ],
)
def test_missing_or_unreadable_image(jpeg, jpeg_ref, store, expected):
    resolve = None if store is None else store.get
    with pytest.raises(BadFrame) as excinfo:
        validate(record(jpeg=jpeg, jpeg_ref=jpeg_ref), NOW_MS, resolve_jpeg_ref=resolve)
    assert reason(excinfo) == expected


def test_store_outage_propagates_instead_of_dead_lettering():
    def store_down(_ref):
        raise ConnectionError("object store unreachable")

    with pytest.raises(ConnectionError):
        validate(record(jpeg=None, jpeg_ref="s3://x"), NOW_MS, resolve_jpeg_ref=store_down)


@pytest.mark.parametrize(
    "overrides",
    [
        {"camera_id": None},
        {"camera_id": 5},
        {"capture_ms": "1700000000000"},
        {"capture_ms": True},
        {"sequence": 1.5},
        {"width": None},
        {"sampler_id": 3},
    ],
)
def test_malformed_record_fields(overrides):
    with pytest.raises(BadFrame) as excinfo:
        validate(record(**overrides), NOW_MS)
    assert reason(excinfo) == "malformed_record"


def test_non_mapping_record_is_malformed():
    with pytest.raises(BadFrame) as excinfo:
        validate(b"raw bytes", NOW_MS)
    assert reason(excinfo) == "malformed_record"


# --- timestamps ----------------------------------------------------------------------------


def test_timestamp_bounds_are_inclusive():
    limits = FrameLimits(max_age_ms=10_000, max_future_skew_ms=500)
    check_timestamp(NOW_MS - 10_000, NOW_MS, limits)
    check_timestamp(NOW_MS + 500, NOW_MS, limits)
    with pytest.raises(BadFrame) as excinfo:
        check_timestamp(NOW_MS - 10_001, NOW_MS, limits)
    assert reason(excinfo) == "late_timestamp"
    with pytest.raises(BadFrame) as excinfo:
        check_timestamp(NOW_MS + 501, NOW_MS, limits)
    assert reason(excinfo) == "future_timestamp"


def test_default_limits_refuse_week_old_and_seconds_ahead_frames():
    week_ms = 7 * 24 * 3600 * 1000
    with pytest.raises(BadFrame) as excinfo:
        validate(record(capture_ms=NOW_MS - week_ms - 1), NOW_MS)
    assert reason(excinfo) == "late_timestamp"
    # Ahead of the clock by more than the default out-of-orderness (5 s): a frame that far
    # ahead would make the other cameras' frames late for their windows.
    with pytest.raises(BadFrame) as excinfo:
        validate(record(capture_ms=NOW_MS + 5_001), NOW_MS)
    assert reason(excinfo) == "future_timestamp"
    assert validate(record(capture_ms=NOW_MS + 5_000), NOW_MS).capture_ms == NOW_MS + 5_000


def test_timestamp_checks_run_before_any_image_work(decoder_must_not_run):
    with pytest.raises(BadFrame) as excinfo:
        validate(record(capture_ms=NOW_MS + 3_600_000, jpeg=b"garbage"), NOW_MS)
    assert reason(excinfo) == "future_timestamp"


def test_bad_frame_pickles_with_its_reason():
    error = BadFrame("corrupt_jpeg", "no SOI")
    restored = pickle.loads(pickle.dumps(error))
    assert (restored.reason_code, restored.message) == ("corrupt_jpeg", "no SOI")
    assert str(restored) == "corrupt_jpeg: no SOI"
    assert restored.reason_code in frames.REASON_CODES


# --- sampler helpers -----------------------------------------------------------------------


def test_encode_jpeg_produces_a_decodable_jpeg_and_checks_quality():
    data = encode_jpeg(gradient_image(), quality=50)
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    assert jpeg_dimensions(data) == (40, 30)
    assert len(encode_jpeg(gradient_image(), quality=10)) < len(encode_jpeg(gradient_image(), 95))
    with pytest.raises(ValueError):
        encode_jpeg(gradient_image(), quality=0)
    with pytest.raises(ValueError):
        encode_jpeg(gradient_image(), quality=101)


def test_resize_to_max_width_scales_down_keeping_aspect():
    assert resize_to_max_width(np.zeros((1080, 1920, 3), np.uint8), 640).shape == (360, 640, 3)
    assert resize_to_max_width(np.zeros((1000, 1001, 3), np.uint8), 500).shape == (500, 500, 3)
    assert resize_to_max_width(np.zeros((1, 4000), np.uint8), 100).shape == (1, 100)


def test_resize_to_max_width_never_upscales():
    image = np.zeros((30, 40, 3), np.uint8)
    assert resize_to_max_width(image, 40) is image
    assert resize_to_max_width(image, 1000) is image
    with pytest.raises(ValueError):
        resize_to_max_width(image, 0)


# --- property: nothing but BadFrame, whatever the bytes -----------------------------------


def mutated_jpeg():
    """A valid JPEG with a few bytes overwritten, truncated, or both."""
    return st.tuples(
        st.lists(
            st.tuples(st.integers(0, len(JPEG_40x30) - 1), st.integers(0, 255)), max_size=8
        ),
        st.integers(0, len(JPEG_40x30)),
    ).map(lambda spec: _mutate(spec[0], spec[1]))


def _mutate(edits, cut):
    data = bytearray(JPEG_40x30)
    for position, value in edits:
        data[position] = value
    return bytes(data[:cut])


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=512).map(lambda b: b"\xff\xd8" + b + b"\xff\xd9"),
        mutated_jpeg(),
    )
)
def test_validate_raises_only_bad_frame_on_arbitrary_bytes(jpeg):
    try:
        analysis = validate(record(jpeg=jpeg, width=0, height=0), NOW_MS)
    except BadFrame as error:
        assert error.reason_code in frames.REASON_CODES
    else:
        assert analysis.image.shape == (analysis.height, analysis.width, 3)
        assert analysis.width * analysis.height <= FrameLimits().max_pixels
