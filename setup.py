"""One distribution, one import name: the repo's folders become sub-packages of ``camflow``."""
from setuptools import setup

SUBPACKAGES = {
    "camflow": "camflow",
    "camflow.console": "camflow/console",
    "camflow.jobs": "jobs",
    "camflow.transforms": "transforms",
    "camflow.schemas": "schemas",
    "camflow.models": "models",
    "camflow.infra": "infra",
}

setup(
    name="camflow",
    version="0.1.0",
    description="Streaming analytics for city CCTV networks: Kafka + PyFlink + ONNX Runtime + FAISS",
    license="Apache-2.0",
    python_requires=">=3.11,<3.13",
    packages=list(SUBPACKAGES),
    package_dir=SUBPACKAGES,
    package_data={
        "camflow.schemas": ["*.avsc", "history/*.avsc"],
        "camflow.models": ["*.yaml"],
        "camflow.infra": ["config/*.yaml", "sql/*.sql", "*.sh"],
        "camflow.console": ["templates/*.html", "static/*"],
    },
    install_requires=[],  # pinned in requirements.txt + constraints.txt, installed in one resolver run
    entry_points={"console_scripts": ["camflow = camflow.cli:main"]},
)
