"""`camflow eval watchlist` on the shared face photos: the real job, enrolled people alerted,
nobody confused with someone else, the unenrolled person never alerted."""
from __future__ import annotations

from pathlib import Path

import pytest

from camflow.config import Config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]
FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"


def test_eval_watchlist_on_shared_faces(kafka_bootstrap, built_models):
    if not (FACES / "labels.csv").is_file():
        pytest.skip(f"shared face photos not present at {FACES}")
    from camflow.evaluation.watchlist import eval_watchlist

    config = Config.model_validate({"kafka": {"bootstrap_servers": kafka_bootstrap},
                                    "job": {"checkpoint_interval_ms": 2000, "idleness_ms": 1000,
                                            "detector": {"threads": 2}}})
    result = eval_watchlist(FACES, FACES / "labels.csv", config=config)
    assert result["queries"] > 0 and result["frames_analysed"] == result["frames_published"], result
    assert result["wrong_person"] == 0, result
    assert result["missed"] <= 1, result
    assert result["false_alerts_on_unenrolled"] == 0, result
    assert result["true_alerts"] >= 1, result
    assert result["threshold"] == config.job.watchlist.face_threshold
