"""camflow: streaming analytics for city CCTV networks.

The distribution installs one import name, ``camflow``. The repository's top-level folders
are mapped onto sub-packages by ``setup.py``:

- ``camflow.transforms`` <- ``transforms/``  pure Python stages (no Flink, no Kafka)
- ``camflow.jobs``       <- ``jobs/``        thin PyFlink wiring
- ``camflow.schemas``    <- ``schemas/``     Avro contracts and their codec
- ``camflow.models``     <- ``models/``      model manifests, build and verification
- ``camflow.infra``      <- ``infra/``       broker, Flink cluster and store start-up

``camflow/`` itself holds the command line, the configuration models and the Kafka clients
that live outside Flink (sampler, analyst-store sink).
"""

__version__ = "0.1.0"
