"""``camflow eval reid`` on real footage with its MOT ground truth: the appearance cues find
people again far above chance, and the command ends with one JSON line."""
import json
import os
from pathlib import Path

import pytest

from camflow.commands import main as camflow_main

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CAMFLOW_DATA", REPO.parent / "shared" / "data"))
TRUTH = DATA / "tracking" / "PETS09-S2L1-gt.txt"


@pytest.fixture(scope="module")
def pets_ground_truth():
    if not TRUTH.is_file():
        pytest.skip(f"no MOT ground truth at {TRUTH}")
    return TRUTH


def test_eval_reid_finds_people_again_by_appearance(vtest_path, pets_ground_truth, capsys):
    # The first 300 frames (~43 s of footage) keep the test short.
    assert camflow_main(["eval", "reid", "--video", str(vtest_path), "--gt", str(pets_ground_truth),
                         "--frames", "300"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["people"] >= 5 and result["queries"] >= 50
    chance = 1.0 / result["people"]
    for cue in ("colour", "embedding", "combined"):
        assert result[cue]["rank1"] > 3 * chance, (cue, result)
        assert result[cue]["map"] >= result[cue]["rank1"]
