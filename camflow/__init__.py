"""camflow: streaming analytics for city CCTV networks.

The distribution installs one import name, ``camflow``. The repository's top-level folders are
its sub-packages through symbolic links in ``camflow/`` (``camflow/jobs -> ../jobs``; a wheel
copies through them):

- ``camflow.transforms`` <- ``transforms/``  pure Python stages (no Flink, no Kafka)
- ``camflow.jobs``       <- ``jobs/``        thin PyFlink wiring
- ``camflow.schemas``    <- ``schemas/``     Avro contracts and their codec
- ``camflow.models``     <- ``models/``      model manifests, build and verification
- ``camflow.infra``      <- ``infra/``       broker, Flink cluster and store start-up

``camflow/`` itself holds the command line (``commands``), the configuration models
(``config``), the kernel (``core``) and the services (sampler, sink, store, console, ...).
"""

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"
