"""Claim-check frame stores: what a sampler puts, the job gets back; missing frames are None;
references outside the store are refused; a file store prunes by capture time."""
from __future__ import annotations

import pytest

from camflow.core.frame_store import (FileFrameStore, FrameRefError, S3FrameStore, frame_key,
                                 open_frame_store)

JPEG = b"\xff\xd8 not really a jpeg \xff\xd9"


def test_file_store_round_trip_and_missing(tmp_path):
    store = FileFrameStore(tmp_path / "frames")
    ref = store.put("pq-port/arrivals", 1_795_000_000_000, 7, JPEG)
    assert ref.startswith("file://") and "pq-port_arrivals" in ref  # no nested directories
    assert store.get(ref) == JPEG
    assert store.get(ref.replace("-7.jpg", "-8.jpg")) is None  # expired or never written
    assert not list((tmp_path / "frames").rglob("*.part"))  # written atomically


def test_file_store_refuses_references_outside_it(tmp_path):
    store = FileFrameStore(tmp_path / "frames")
    (tmp_path / "secret.txt").write_text("not a frame")
    for ref in ((tmp_path / "secret.txt").as_uri(),
                (tmp_path / "frames" / ".." / "secret.txt").as_uri(),
                "s3://bucket/frames/x.jpg", "http://example.com/x.jpg"):
        with pytest.raises(FrameRefError):
            store.get(ref)


def test_file_store_prunes_by_capture_time(tmp_path):
    store = FileFrameStore(tmp_path)
    old = store.put("walkway", 1_000, 1, JPEG)
    new = store.put("walkway", 5_000, 2, JPEG)
    assert store.prune(older_than_ms=2_000) == 1
    assert store.get(old) is None and store.get(new) == JPEG


def test_keys_order_by_capture_time():
    keys = [frame_key("c", ms, 0) for ms in (9_000, 10_000, 1_795_000_000_000)]
    assert keys == sorted(keys)


def test_open_frame_store_by_url(tmp_path):
    assert isinstance(open_frame_store(tmp_path.as_uri()), FileFrameStore)
    with pytest.raises(ValueError):
        open_frame_store("ftp://host/frames")


def test_s3_store_round_trip_against_moto():
    moto = pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="camflow-frames")
        store = S3FrameStore("camflow-frames", "phu-quoc", client=client)
        ref = store.put("walkway", 1_795_000_000_000, 3, JPEG)
        assert ref.startswith("s3://camflow-frames/phu-quoc/walkway/")
        assert store.get(ref) == JPEG
        assert store.get(ref.replace("-3.jpg", "-4.jpg")) is None
        with pytest.raises(FrameRefError):
            store.get("s3://other-bucket/phu-quoc/walkway/x.jpg")
        with pytest.raises(FrameRefError):
            store.get("s3://camflow-frames/elsewhere/x.jpg")


def test_cli_prunes_a_file_store_by_retention(tmp_path, capsys):
    import json
    import time

    from camflow.commands import main
    store = FileFrameStore(tmp_path / "frames")
    now = int(time.time() * 1000)
    old = store.put("walkway", now - 2 * 60_000, 1, JPEG)
    fresh = store.put("walkway", now, 2, JPEG)
    config = tmp_path / "camflow.yaml"
    config.write_text(f"frame_store: {{url: '{store.url}', retention_minutes: 1}}\n")
    assert main(["frames", "prune", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    assert store.get(old) is None and store.get(fresh) == JPEG
    config.write_text("cameras: []\n")
    with pytest.raises(SystemExit, match="frame_store.url"):
        main(["frames", "prune", "--config", str(config)])
