"""Bad reliability options get a clear error before anything is started."""
from __future__ import annotations

import pytest

from camflow.commands import main


@pytest.mark.parametrize("argv,message", [
    (["job", "submit", "--allow-non-restored-state"], "needs --from-savepoint"),
    (["job", "submit", "--from-checkpoint", "/x", "--from-savepoint", "/y"], "not both"),
    (["ingest", "--camera", "c", "--source", "/no/such.avi", "--max-in-flight", "0"], "at least 1"),
])
def test_refused_with_a_clear_message(argv, message):
    with pytest.raises(SystemExit, match=message):
        main(argv)


def test_ingest_refuses_an_unknown_policy(capsys):
    with pytest.raises(SystemExit):
        main(["ingest", "--camera", "c", "--source", "/no/such.avi", "--policy", "drop-some"])
    assert "invalid choice: 'drop-some'" in capsys.readouterr().err


def test_savepoint_without_a_job_of_this_deployment_says_so(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("deployment: no-such-deployment-here\n")
    with pytest.raises(SystemExit, match="camflow job savepoint: (no Flink cluster answers|no live job)"):
        main(["job", "savepoint", "--config", str(config), "--dir", str(tmp_path)])


def test_camera_sampler_policy_is_validated():
    from pydantic import ValidationError

    from camflow.config import Config
    camera = Config.model_validate({"cameras": [{"id": "port", "sampler_policy": "latest-only",
                                                 "sampler_max_in_flight": 8}]}).camera("port")
    assert (camera.sampler_policy, camera.sampler_max_in_flight) == ("latest-only", 8)
    assert Config.model_validate({"cameras": [{"id": "port"}]}).camera("port").sampler_policy == "keep-all"
    for bad in ({"sampler_policy": "drop-some"}, {"sampler_max_in_flight": 0}):
        with pytest.raises(ValidationError):
            Config.model_validate({"cameras": [{"id": "port", **bad}]})


@pytest.mark.parametrize("argv, needs", [(["eval", "faces"], "--images and --labels"),
                                         (["eval", "plates", "--images", "x"], "--images and --labels"),
                                         (["eval", "detect"], "--video")])
def test_eval_without_its_data_says_what_is_missing(argv, needs, capsys):
    from camflow.commands import main
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert needs in f"{stopped.value.code} {capsys.readouterr().err}"
