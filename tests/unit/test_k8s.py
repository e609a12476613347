"""The Kubernetes files: the job on Flink 2.3 with Kubernetes-style resources and a Prometheus
reporter, a Deployment for each process besides the job, and the deploy-time Job that
provisions topics and schemas; the image installs what pyproject.toml declares."""
from __future__ import annotations

from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"


def docs(name: str) -> list[dict]:
    return list(yaml.safe_load_all((K8S / name).read_text()))


def test_the_flink_deployment_matches_the_flink_it_runs():
    deployment = next(d for d in docs("flinkdeployment.yaml") if d["kind"] == "FlinkDeployment")
    spec = deployment["spec"]
    assert spec["flinkVersion"] == "v2_3"
    assert "flink:2.3" in (K8S / "Dockerfile").read_text()
    for role in ("jobManager", "taskManager"):
        assert "resource" not in spec[role]  # deprecated: resources, as Kubernetes writes them
        assert set(spec[role]["resources"]) == {"requests", "limits"}
    conf = spec["flinkConfiguration"]
    assert conf["metrics.reporter.prom.factory.class"].endswith("PrometheusReporterFactory")
    port = conf["metrics.reporter.prom.port"]
    for role in ("jobManager", "taskManager"):
        template = spec[role]["podTemplate"]
        assert template["metadata"]["annotations"]["prometheus.io/port"] == port
        assert {"name": "metrics", "containerPort": int(port)} in template["spec"]["containers"][0]["ports"]


def test_every_process_besides_the_job_has_a_deployment():
    found = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
             for d in docs("services.yaml") if d["kind"] == "Deployment"}
    assert set(found) == {"sampler", "sink", "console", "notify"}
    for component, deployment in found.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:2] == ["camflow", component if component != "sampler" else "ingest"]
        env = {e["name"]: e for e in container["env"]}
        assert env["CAMFLOW_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "camflow-kafka"
        assert "CAMFLOW_CONFIG" in env or "--config" in container["args"]
        if component != "console":
            assert "--metrics-port" in container["args"]
    assert found["sampler"]["spec"]["replicas"] == 1  # two samplers of a camera: frames twice


def test_topics_and_schemas_are_provisioned_at_deploy_time():
    job = docs("provision-job.yaml")[0]
    assert job["kind"] == "Job"
    spec = job["spec"]["template"]["spec"]
    assert spec["initContainers"][0]["args"] == ["camflow", "topics", "apply"]
    assert "camflow schemas register" in " ".join(spec["containers"][0]["command"])


def test_the_image_installs_the_package_with_its_pinned_dependencies():
    dockerfile = (K8S / "Dockerfile").read_text()
    assert "COPY pyproject.toml" in dockerfile and "setup.py" not in dockerfile
    assert "-c constraints.txt ." in dockerfile and "camflow --version" in dockerfile
