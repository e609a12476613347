# camflow: `make demo` sets up and runs the job on a real video; `make test` runs the suite.
SHELL := /bin/bash
PY := .venv/bin/python
CAMFLOW := .venv/bin/camflow
VIDEO ?=
CAMERAS ?= 1
PYTEST_ARGS ?=

.PHONY: setup models demo test test-long unit up down clean bench chaos soak
CHAOS_ARGS ?=
SOAK_ARGS ?=

setup: .venv/.camflow-setup.stamp

.venv/.camflow-setup.stamp: requirements.txt constraints.txt pyproject.toml infra/setup_env.sh
	bash infra/setup_env.sh

models: setup
	$(CAMFLOW) models build

demo: models
	$(CAMFLOW) demo --cameras $(CAMERAS) $(if $(VIDEO),--video "$(VIDEO)")

test: models
	bash infra/postgres.sh
	bash infra/mosquitto.sh
	$(PY) -m pytest tests -m "not long" $(PYTEST_ARGS)

# Tests of minutes each (the previous release's state restored; plates through the job on
# every labelled scene; a TaskManager killed mid-job; stop with savepoint and resubmit; the
# watchlist evaluated through the job): kept out of `make test` to hold it under 25 minutes.
test-long: models
	bash infra/postgres.sh
	$(PY) -m pytest tests -m long $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Local services for development: Tansu broker, PostgreSQL, and a standalone Flink cluster
# (a JobManager and 2 TaskManagers) that `camflow job submit` targets.
up: setup
	$(PY) -m camflow.infra.broker start
	bash infra/postgres.sh
	bash infra/mosquitto.sh
	$(PY) -m camflow.infra.flink up

down:
	-$(PY) -m camflow.infra.flink down
	-$(PY) -m camflow.infra.broker stop

clean: down
	rm -rf var .pytest_cache

# The 41-camera benchmark (bench/README.md keeps the table of measured configurations).
VIDEOS ?= ../shared/data/video
BENCH_ARGS ?=
chaos: models
	bash infra/postgres.sh
	$(PY) -m bench.chaos $(CHAOS_ARGS)

soak: models
	$(PY) -m bench.soak $(SOAK_ARGS)

# Hostile frames and records through admit + analyse (bench/fuzz.py): one JSON line
# {inputs, dead_letters, escaped, max_ms, p99_ms, ...}; fails on an escape, an accepted hostile
# input or an input over the CPU budget. A short run is tests/unit/test_hardening_fuzz.py.
.PHONY: fuzz
FUZZ_ARGS ?= --inputs 10000
fuzz: setup
	$(PY) -m bench.fuzz $(FUZZ_ARGS)

# Default: the fastest measured setup (bench/island.yaml; 2 TaskManagers on the local cluster).
BENCH_SETUP ?= --config bench/island.yaml --cluster --parallelism 2
bench: models
	$(PY) -m bench.pipeline --videos "$(VIDEOS)" $(BENCH_SETUP) $(BENCH_ARGS)

# The samplers' own CPU (bench/samplers.py): decode before/after issue 17 on every video, then
# 41 real samplers (one process, 41 cameras; before, then after) replaying the videos in real
# time to a broker of its own; the last line is one JSON object.
.PHONY: bench-samplers
SAMPLER_BENCH_ARGS ?=
bench-samplers: setup
	$(PY) -m bench.samplers --videos "$(VIDEOS)" $(SAMPLER_BENCH_ARGS)
