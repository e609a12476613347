"""Issue 16: the claim-check stores. A file store is private (0700 root, 0600 frames, a root
of another user refused), serves paths with spaces and non-ASCII characters, and an S3 store
tells the errors about one key (a dead letter) from those about the store (the task fails)."""
from __future__ import annotations

import os
import stat

import pytest

from camflow.core import frame_store as fs
from camflow.core.frame_store import (FileFrameStore, FrameRefError, FrameStoreError,
                                      S3FrameStore, open_frame_store)

JPEG = b"\xff\xd8 frame \xff\xd9"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_store_is_private(tmp_path):
    store = FileFrameStore(tmp_path / "shm" / "camflow-frames")
    ref = store.put("walkway", 1_795_000_000_000, 1, JPEG)
    frame = ref.removeprefix("file://")
    assert mode(store.root) == 0o700
    assert mode(os.path.dirname(frame)) & 0o077 == 0
    assert mode(frame) == 0o600
    assert store.get(ref) == JPEG


def test_a_world_readable_root_of_ours_is_tightened(tmp_path):
    root = tmp_path / "frames"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)  # what earlier versions created
    store = FileFrameStore(root)
    ref = store.put("walkway", 1, 1, JPEG)
    assert mode(root) == 0o700 and mode(ref.removeprefix("file://")) == 0o600


def test_a_root_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "frames"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    if os.geteuid() == 0:
        os.chown(root, 4242, 4242)  # someone else created it first (on /dev/shm anyone can)
    else:
        monkeypatch.setattr(fs.os, "geteuid", lambda: os.getuid() + 4242)
    with pytest.raises(FrameStoreError, match="belongs to uid"):
        FileFrameStore(root).put("walkway", 1, 1, JPEG)
    with pytest.raises(FrameStoreError):
        FileFrameStore(root).get(root.as_uri() + "/walkway/0000000000001-1.jpg")
    assert not (root / "walkway").exists()


@pytest.mark.parametrize("name", ["camflow frames", "kamerabilder-ü", "フレーム"])
def test_a_store_path_with_spaces_or_non_ascii_serves_its_frames(tmp_path, name):
    store = FileFrameStore(tmp_path / name)
    ref = store.put("walkway", 1_795_000_000_000, 7, JPEG)
    assert store.get(ref) == JPEG
    # the same store opened from its URL (how the job opens it from the config)
    assert open_frame_store(store.url).root == store.root
    assert open_frame_store(store.url).get(ref) == JPEG


def test_a_missing_root_is_a_missing_frame_not_an_error(tmp_path):
    store = FileFrameStore(tmp_path / "never-created")
    assert store.get(store.url + "/walkway/0000000000001-1.jpg") is None


def test_frame_ref_error_pickles_with_its_reason():
    import pickle

    error = pickle.loads(pickle.dumps(FrameRefError("too big", "oversize_frame")))
    assert (error.reason_code, str(error)) == ("oversize_frame", "too big")


# --- S3: one key's errors are the record's, the store's are transient -----------------------
def stubbed_store(code: str | None, status: int, body: bytes = JPEG):
    boto3 = pytest.importorskip("boto3")
    from botocore.response import StreamingBody
    from botocore.stub import Stubber
    import io

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y")
    stubber = Stubber(client)
    if code is None:
        stubber.add_response("get_object", {"Body": StreamingBody(io.BytesIO(body), len(body)),
                                            "ContentLength": len(body)})
    else:
        stubber.add_client_error("get_object", service_error_code=code, http_status_code=status)
    stubber.activate()
    return S3FrameStore("frames", "site", client=client)


REF = "s3://frames/site/walkway/0001795000000000-1.jpg"


@pytest.mark.parametrize("code,status", [("AccessDenied", 403), ("KeyTooLongError", 400),
                                         ("InvalidArgument", 400), ("InvalidObjectState", 403)])
def test_s3_refusing_one_key_is_a_dead_letter(code, status):
    with pytest.raises(FrameRefError) as excinfo:
        stubbed_store(code, status).get(REF)
    assert excinfo.value.reason_code == "missing_image"


@pytest.mark.parametrize("code,status", [("SlowDown", 503), ("InternalError", 500),
                                         ("ExpiredToken", 400), ("InvalidAccessKeyId", 403),
                                         ("NoSuchBucket", 404), ("RequestTimeTooSkewed", 403)])
def test_s3_store_wide_or_transient_errors_propagate(code, status):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        stubbed_store(code, status).get(REF)


def test_s3_missing_key_is_none_and_oversize_is_refused():
    assert stubbed_store("NoSuchKey", 404).get(REF) is None
    with pytest.raises(FrameRefError) as excinfo:
        stubbed_store(None, 200, b"x" * 2048).get(REF, max_bytes=1024)
    assert excinfo.value.reason_code == "oversize_frame"
    assert stubbed_store(None, 200).get(REF) == JPEG


@pytest.mark.parametrize("ref", ["s3://frames/site/../other/x.jpg", "s3://frames/site//x.jpg",
                                 "s3://frames/site/" + "k" * 1100, "s3://frames/site/x\x00.jpg"])
def test_s3_refs_with_dot_segments_or_overlong_keys_never_reach_s3(ref):
    store = S3FrameStore("frames", "site", client=object())  # any call would fail
    with pytest.raises(FrameRefError):
        store.get(ref)
