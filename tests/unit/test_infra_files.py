"""The production deployment files parse and name what the job needs."""
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_flink_deployment_runs_the_camera_job_with_checkpoints():
    docs = list(yaml.safe_load_all((REPO / "infra/k8s/flinkdeployment.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "FlinkDeployment")
    assert deployment["apiVersion"] == "flink.apache.org/v1beta1"
    spec = deployment["spec"]
    assert "/opt/camflow/jobs/camera_job.py" in spec["job"]["args"]
    assert spec["job"]["upgradeMode"] == "savepoint"
    conf = spec["flinkConfiguration"]
    assert conf["execution.checkpointing.dir"].startswith("s3://")
    assert conf["python.executable"].endswith("/.venv/bin/python")
    # secrets come from Kubernetes secrets, not from the config map
    env = spec["taskManager"]["podTemplate"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["secretKeyRef"]["name"] == "camflow-kafka"
    assert (REPO / "infra/k8s/Dockerfile").read_text().count("COPY") >= 5
