"""camflow watchlist through the real broker: enrol, refuse bad photos, remove, audit."""
from __future__ import annotations

import getpass

import uuid
from pathlib import Path

import pytest

from camflow.config import Kafka
from camflow.services.enrolment import EnrolmentError, Watchlist, export_rows

pytestmark = pytest.mark.integration
FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"


@pytest.fixture
def watchlist(kafka_bootstrap):
    suffix = uuid.uuid4().hex[:8]
    kafka = Kafka(bootstrap_servers=kafka_bootstrap,
                  topics={"watchlist": f"watchlist-{suffix}", "watchlist_audit": f"audit-{suffix}"})
    return Watchlist(kafka)


@pytest.fixture
def faces_dir():
    if not FACES.is_dir():
        pytest.skip(f"shared face photos not present at {FACES}")
    return FACES


def test_enrol_list_remove_and_audit(watchlist, faces_dir, built_models):
    obama = watchlist.add_face("W-1", "Barack Obama", "wanted",
                               [str(faces_dir / "tests__test_images__obama.jpg"),
                                str(faces_dir / "tests__test_images__obama2.jpg")], added_by="alice")
    assert len(obama["embeddings"]) == 2
    watchlist.add_plate("51F-123.45", reason="stolen car", added_by="bob")
    current = watchlist.entries()
    assert set(current) == {"face:W-1", "plate:51F12345"}
    assert current["plate:51F12345"]["plate_display"] == "51F-123.45"
    rows = export_rows(current)
    assert all("embeddings" not in row for row in rows) and '"photos": 2' in rows[0]

    watchlist.remove("W-1", added_by="carol")
    assert set(watchlist.entries()) == {"plate:51F12345"}
    audit = [(c["added_by"], c["kind"], c["id"], c["removed"]) for c in watchlist.audit()]
    # who: the identity the broker knows (no SASL here: the OS user), never only a claimed name
    me = getpass.getuser()
    assert audit == [(f"{me} (for alice)", "face", "W-1", False),
                     (f"{me} (for bob)", "plate", "51F12345", False),
                     (f"{me} (for carol)", "face", "W-1", True)]
    # the removal record carries no embeddings: compaction drops the person's biometrics
    assert watchlist.audit()[-1]["embeddings"] == []


def test_enrolment_refuses_photos_with_no_or_several_faces(watchlist, faces_dir, tmp_path, built_models):
    import cv2
    import numpy as np
    blank = tmp_path / "wall.jpg"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 200, np.uint8))
    with pytest.raises(EnrolmentError, match="no face found"):
        watchlist.add_face("W-2", "Nobody", "suspect", [str(blank)])
    with pytest.raises(EnrolmentError, match="2 faces found"):
        watchlist.add_face("W-3", "Two", "suspect", [str(faces_dir / "examples__two_people.jpg")])
    with pytest.raises(EnrolmentError, match="not a readable image"):
        watchlist.add_face("W-4", "Broken", "suspect", [str(tmp_path / "missing.jpg")])
    assert watchlist.entries() == {} and watchlist.audit() == []
