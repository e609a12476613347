"""One distribution, one import name.

The repository's top-level folders (``jobs/ transforms/ schemas/ models/ infra/``) are
sub-packages of ``camflow`` through symbolic links in ``camflow/`` (``camflow/jobs ->
../jobs``), so the package on disk is the package Python imports: tools that walk the tree
(import-linter, type checkers, editors) see the whole import graph, and a plain or editable
install needs no folder mapping. Building a wheel copies through the links.
"""
from setuptools import find_packages, setup

setup(
    name="camflow",
    version="0.1.0",
    description="Streaming analytics for city CCTV networks: Kafka + PyFlink + ONNX Runtime + FAISS",
    license="Apache-2.0",
    python_requires=">=3.11,<3.13",
    packages=find_packages(include=["camflow", "camflow.*"]),
    package_data={
        "camflow.schemas": ["*.avsc", "history/*.avsc"],
        "camflow.models": ["*.yaml"],
        "camflow.infra": ["config/*.yaml", "sql/*.sql", "*.sh"],
        "camflow.services.console": ["templates/*.html", "static/*"],
    },
    install_requires=[],  # pinned in requirements.txt + constraints.txt, installed in one resolver run
    entry_points={"console_scripts": ["camflow = camflow.commands:main"]},
)
