"""The short form of `make chaos`: two live cameras, one TaskManager killed mid-stream, then the
whole job cancelled right after the first checkpoint the recovered job completes and restored
from it, on the local standalone cluster: every frame analysed once, every window the final
watermark closed aggregated, every crowd alert of those windows present, no alert id twice."""
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long]


def test_taskmanager_kill_and_job_restart_lose_nothing(kafka_bootstrap, built_models, tmp_path):
    from bench.chaos import run_chaos
    result = run_chaos(kills=1, frames_per_camera=60, fps=2.0, timeout_s=300, seed=7,
                       work=tmp_path)
    print(result)
    assert result["restarts"] == 2
    assert result["frames_sent"] >= 120  # two live cameras, 60 frames each at least
    assert result["lost"] == 0 and result["analysed"] == result["frames_sent"]
    assert result["duplicate_alerts_in_store"] == 0
    # Windows that Flink's own window operator lost after this sequence of faults (issue 6)
    # are what CountPerWindow's explicit state is for.
    assert result["windows_expected"] > 0 and result["windows_missing"] == 0, result
    assert result["missing_crowd_alerts"] == 0, result
