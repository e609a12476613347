"""A watchlist alert on a claim-checked frame gets its evidence crop from the frame store; a
frame already gone from the store still gives the alert, without a crop."""
import numpy as np
import pytest

pytest.importorskip("pyflink")
from camflow.config import Config  # noqa: E402
from camflow.core.evidence_store import AlertSnapshots, EvidenceStore  # noqa: E402
from camflow.core.frame_store import FileFrameStore  # noqa: E402
from camflow.jobs.operators import MatchWatchlist, frame_store_reader  # noqa: E402
from camflow.transforms.detections import Detections, FrameAnalysis  # noqa: E402
from camflow.transforms.frames import encode_jpeg  # noqa: E402


def _match_watchlist(tmp_path, evidence: bool = False):
    store = FileFrameStore(tmp_path / "frames")
    raw = {"frame_store": {"url": store.url}}
    if evidence:
        raw["evidence"] = {"url": (tmp_path / "evidence").as_uri()}
    config = Config.model_validate(raw)
    operator = MatchWatchlist(config)
    operator.read_frame = frame_store_reader(config)  # what open() does
    operator.snapshots = AlertSnapshots(config)
    return store, operator


def _analysis(ref: str) -> tuple[FrameAnalysis, Detections]:
    plates = Detections(xyxy=np.array([[40, 30, 120, 60]], np.float32),
                        confidence=np.array([0.9], np.float32), class_id=np.array([0]),
                        tracker_id=np.array([7]), class_names=("licence_plate",))
    analysis = FrameAnalysis("gate", 1_000, 1, 160, 120, b"", jpeg_ref=ref, plates=plates)
    return analysis, plates


def test_evidence_is_cropped_from_the_stored_frame(tmp_path):
    store, operator = _match_watchlist(tmp_path)
    ref = store.put("gate", 1_000, 1, encode_jpeg(np.full((120, 160, 3), 200, np.uint8)))
    analysis, plates = _analysis(ref)
    [alert] = operator._with_evidence([{"track_id": 7}], analysis, plates)
    assert alert["evidence_jpeg"][:2] == b"\xff\xd8"


def test_a_frame_gone_from_the_store_still_gives_the_alert(tmp_path):
    store, operator = _match_watchlist(tmp_path)
    analysis, plates = _analysis((tmp_path / "frames" / "gate" / "0000000001000-1.jpg").as_uri())
    [alert] = operator._with_evidence([{"track_id": 7}], analysis, plates)
    assert "evidence_jpeg" not in alert


def test_with_an_evidence_store_the_alert_also_gets_the_whole_frame_as_its_snapshot(tmp_path):
    store, operator = _match_watchlist(tmp_path, evidence=True)
    ref = store.put("gate", 1_000, 1, encode_jpeg(np.full((120, 160, 3), 200, np.uint8)))
    analysis, plates = _analysis(ref)
    alert = {"alert_id": "a1", "camera_id": "gate", "track_id": 7, "subject": "51F59881"}
    [alert] = operator._with_evidence([alert], analysis, plates)
    snapshot = EvidenceStore((tmp_path / "evidence").as_uri()).get(alert["evidence_ref"])
    assert snapshot[:2] == b"\xff\xd8" and alert["evidence_jpeg"][:2] == b"\xff\xd8"
