"""camflow replay on real footage (vtest.avi) with the demo scene: the walkway camera's
counting line, restricted lawn, loitering corner and crowd limit produce their alerts."""
from __future__ import annotations

import json

import pytest

from camflow.commands import main as camflow_main
from camflow.config import load_config
from camflow.commands.replay import replay

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def walkway_replay(vtest_path, kafka_bootstrap, built_models, repo_root):
    config = load_config(repo_root / "infra/config/demo.yaml")
    config = config.model_copy(update={"kafka": config.kafka.model_copy(
        update={"bootstrap_servers": kafka_bootstrap})})
    alerts = []
    summary = replay(config, str(vtest_path), "walkway", print_alert=alerts.append)
    return summary, alerts


def test_replay_raises_the_expected_kinds_of_alerts(walkway_replay):
    summary, alerts = walkway_replay
    assert summary["frames"] == 318  # 79.5 s at 4 fps
    kinds = summary["alerts_by_type"]
    # pedestrians cross the lawn, 7-8 people are in view at the busiest moments (limit 6),
    # and people linger at the road corner
    assert kinds.get("intrusion", 0) >= 1 and kinds.get("crowd_limit", 0) >= 1
    assert kinds.get("loitering", 0) >= 1
    assert set(kinds) <= {"intrusion", "crowd_limit", "loitering", "zone_crowd", "running",
                          "fall", "crowd_dispersal", "wrong_way"}
    intrusions = [a for a in alerts if a["type"] == "intrusion"]
    assert all(json.loads(a["evidence"])["zone_id"] == "lawn" for a in intrusions)
    assert len({a["alert_id"] for a in alerts}) == len(alerts)


def test_replay_counts_line_crossings_both_ways(walkway_replay):
    summary, _ = walkway_replay
    crossings = summary["line_crossings"]
    people_a_to_b = crossings.get("walkway-middle:a_to_b:person", 0)
    people_b_to_a = crossings.get("walkway-middle:b_to_a:person", 0)
    # people walk along the path in both directions through the middle of the view
    assert people_a_to_b >= 2 and people_b_to_a >= 2, crossings


def test_zones_draw_renders_the_scene(tmp_path, vtest_path, repo_root):
    out = tmp_path / "walkway.png"
    assert camflow_main(["zones", "draw", "--camera", "walkway", "--image", str(vtest_path),
                         "--config", str(repo_root / "infra/config/demo.yaml"), "--out", str(out)]) == 0
    import cv2
    drawn = cv2.imread(str(out))
    assert drawn.shape == (576, 768, 3)
    assert camflow_main(["zones", "draw", "--camera", "nowhere", "--image", str(vtest_path),
                         "--config", str(repo_root / "infra/config/demo.yaml")]) == 2
