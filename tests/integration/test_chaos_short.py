"""The short form of `make chaos`: two live cameras, one TaskManager killed mid-stream and one
whole-job restart from the latest retained checkpoint, on the local standalone cluster; nothing
may be lost and every window the final watermark passed is aggregated."""
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_taskmanager_kill_and_job_restart_lose_nothing(kafka_bootstrap, built_models, tmp_path):
    from camflow.infra.chaos import run_chaos
    result = run_chaos(kills=1, frames_per_camera=60, fps=2.0, timeout_s=300, seed=7,
                       work=tmp_path)
    print(result)
    assert result["restarts"] == 2
    assert result["frames_sent"] >= 120  # two live cameras, 60 frames each at least
    assert result["lost"] == 0 and result["analysed"] == result["frames_sent"]
    assert result["duplicate_alerts_in_store"] == 0
    assert result["windows_missing"] == 0, result
    assert result["missing_crowd_alerts"] == 0, result
