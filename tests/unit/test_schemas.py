"""The Avro contracts: round trips, both wire formats, and the compatibility rule."""
import copy
import io
import json
import struct

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema

from camflow.schemas import codec as codec_mod
from camflow.schemas.codec import CONTRACTS, AvroCodec, SchemaError, schema_json

FRAME = {"camera_id": "walkway", "capture_ms": 1_764_000_000_123, "sequence": 7,
         "jpeg": b"\xff\xd8jpeg\xff\xd9", "jpeg_ref": None, "width": 768, "height": 576,
         "sampler_id": "host:1"}


def frame_sample_v2() -> dict:
    """A next version of FrameSample that follows the rule: one new optional field."""
    v2 = copy.deepcopy(schema_json("FrameSample"))
    v2["fields"].append({"name": "lens", "type": ["null", "string"], "default": None})
    return v2


def test_every_contract_field_is_documented():
    for name in CONTRACTS:
        schema = schema_json(name)
        assert schema["doc"], name
        for field in schema["fields"]:
            assert field.get("doc"), f"{name}.{field['name']} has no doc"


def test_single_object_round_trip_and_header():
    codec = AvroCodec("FrameSample")
    data = codec.encode(FRAME)
    assert data[:2] == b"\xc3\x01"
    assert codec.decode(data) == FRAME


def test_confluent_wire_format_with_registry():
    codec = AvroCodec("FrameSample", {"url": "mock://registry"}, subject="frames-value")
    data = codec.encode(FRAME)
    assert data[0] == 0 and struct.unpack(">I", data[1:5])[0] == codec._schema_id()
    assert codec.decode(data) == FRAME


@pytest.mark.parametrize("data,reason", [
    (b"", "unknown_encoding"),
    (b"plain text", "unknown_encoding"),
    (b"\xc3\x01" + b"\x00" * 8 + b"xx", "unknown_schema"),
])
def test_unreadable_records_are_refused_with_a_reason(data, reason):
    with pytest.raises(SchemaError) as err:
        AvroCodec("FrameSample").decode(data)
    assert err.value.reason == reason


def test_wrong_contract_is_refused():
    alert = AvroCodec("Alert").encode({"alert_id": "a", "type": "t", "severity": "info",
                                       "camera_id": "c", "time_ms": 1})
    with pytest.raises(SchemaError) as err:
        AvroCodec("FrameSample").decode(alert)
    assert err.value.reason == "unknown_schema"


def test_truncated_body_is_malformed():
    data = AvroCodec("FrameSample").encode(FRAME)
    with pytest.raises(SchemaError) as err:
        AvroCodec("FrameSample").decode(data[:-5])
    assert err.value.reason == "malformed_record"


def test_new_optional_field_does_not_break_current_readers_single_object(tmp_path, monkeypatch):
    v2 = frame_sample_v2()
    (tmp_path / "FrameSample.v2.avsc").write_text(json.dumps(v2))
    monkeypatch.setenv("CAMFLOW_SCHEMA_PATH", str(tmp_path))
    codec_mod.known_writer_schemas.cache_clear()
    try:
        parsed = fastavro.parse_schema(v2)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parsed, {**FRAME, "lens": "wide"})
        data = b"\xc3\x01" + codec_mod.schema_fingerprint(parsed) + body.getvalue()
        assert AvroCodec("FrameSample").decode(data) == FRAME  # the reader ignores 'lens'
    finally:
        monkeypatch.delenv("CAMFLOW_SCHEMA_PATH")
        codec_mod.known_writer_schemas.cache_clear()


def test_new_optional_field_does_not_break_current_readers_with_registry():
    reader = AvroCodec("FrameSample", {"url": "mock://compat"}, subject="frames-value")
    client = reader._registry()
    v2_id = client.register_schema("frames-value", Schema(json.dumps(frame_sample_v2()), "AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(frame_sample_v2()), {**FRAME, "lens": "tele"})
    assert reader.decode(b"\x00" + struct.pack(">I", v2_id) + body.getvalue()) == FRAME


def test_new_reader_reads_old_records_with_the_default():
    old = io.BytesIO()
    fastavro.schemaless_writer(old, fastavro.parse_schema(schema_json("FrameSample")), FRAME)
    old.seek(0)
    record = fastavro.schemaless_reader(old, fastavro.parse_schema(schema_json("FrameSample")),
                                        fastavro.parse_schema(frame_sample_v2()))
    assert record["lens"] is None


def test_history_holds_the_current_version_of_every_contract():
    for name in CONTRACTS:
        current = codec_mod.schema_fingerprint(codec_mod.parsed_schema(name))
        shipped = codec_mod.known_writer_schemas(name)
        assert len(shipped) >= 1 and current in shipped
        # the current file must equal one shipped history file (released versions are frozen)
        from importlib import resources
        history = resources.files("camflow.schemas").joinpath("history")
        fingerprints = {codec_mod.schema_fingerprint(fastavro.parse_schema(json.loads(p.read_text())))
                        for p in history.iterdir() if p.name.startswith(f"{name}.v")}
        assert current in fingerprints, f"{name}: current schema differs from every history file"


def test_codec_pickles_without_its_client():
    import pickle
    codec = AvroCodec("Alert", {"url": "mock://p"})
    codec._registry()
    clone = pickle.loads(pickle.dumps(codec))
    assert clone._client is None and clone.contract == "Alert"
