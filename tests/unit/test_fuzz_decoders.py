"""Property-based fuzzing of every decoder that reads outside input: whatever the bytes or
text, each either returns a valid value or raises its own clear error type -- never anything
else, never a crash."""
import warnings

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camflow.config import ConfigError, load_config
from camflow.schemas.codec import CONTRACTS, AvroCodec, SchemaError, parsed_schema, schema_fingerprint
from camflow.transforms.detect import decode_centernet_tfjs, postprocess
from camflow.transforms.plates import parse_plate
from camflow.transforms.watchlist import WatchlistError, normalise_entry, validate_embeddings

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(contract=st.sampled_from(sorted(CONTRACTS)), data=st.binary(max_size=512))
def test_avro_decode_of_arbitrary_bytes(contract, data):
    try:
        record = AvroCodec(contract).decode(data)
    except SchemaError as exc:
        assert exc.reason in {"unknown_encoding", "unknown_schema", "malformed_record"}
    else:
        assert isinstance(record, dict)


@FUZZ
@given(contract=st.sampled_from(sorted(CONTRACTS)), body=st.binary(max_size=512))
def test_avro_decode_of_a_known_header_with_garbage_body(contract, body):
    """The nastiest case: a valid single-object header for the right contract, random body."""
    data = b"\xc3\x01" + schema_fingerprint(parsed_schema(contract)) + body
    try:
        AvroCodec(contract).decode(data)
    except SchemaError as exc:
        assert exc.reason == "malformed_record"


@FUZZ
@given(text=st.one_of(st.text(max_size=30), st.lists(st.text(max_size=12), max_size=3)))
def test_plate_parsing_of_arbitrary_ocr_text(text):
    plate = parse_plate(text)
    if plate is not None:
        assert plate.text.isascii() and plate.text.isalnum() and plate.text == plate.text.upper()
        assert 0.0 <= plate.confidence <= 1.0


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)


@FUZZ
@given(rows=st.lists(st.lists(finite_or_not, min_size=0, max_size=130), max_size=3))
def test_embedding_validation(rows):
    try:
        out = validate_embeddings(rows)
    except WatchlistError as exc:
        assert exc.reason in {"bad_shape", "non_finite", "zero_norm"}
    else:
        assert out.shape[1] == 128 and np.all(np.isfinite(out))
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)


@FUZZ
@given(entry=st.dictionaries(st.sampled_from(["id", "kind", "category", "embeddings", "plate", "name"]),
                             st.one_of(st.none(), st.text(max_size=8), st.integers(),
                                       st.lists(st.lists(finite_or_not, max_size=4), max_size=2))))
def test_watchlist_entry_validation(entry):
    try:
        normalise_entry(entry)
    except WatchlistError:
        pass


@FUZZ
@given(raw=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=6, max_size=60))
def test_detector_output_decoding_and_nms_on_garbage(raw):
    out = np.asarray(raw[: len(raw) // 6 * 6], np.float32)
    with warnings.catch_warnings():  # NaN casts warn; what matters is what comes out
        warnings.simplefilter("ignore", RuntimeWarning)
        xyxy, score, cls = decode_centernet_tfjs(out)
        keep = postprocess(xyxy, score, cls, score_threshold=0.3, iou_threshold=0.5,
                           max_detections=10, num_classes=80)
    assert len(keep) <= 10 and all(0 <= i < len(score) for i in keep)
    assert all(np.isfinite(score[i]) and 0.3 <= score[i] <= 1 and np.isfinite(xyxy[i]).all() for i in keep)


@FUZZ
@given(doc=st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
                        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                        max_leaves=12))
def test_config_loading_of_arbitrary_yaml(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
