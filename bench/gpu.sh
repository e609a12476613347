#!/usr/bin/env bash
# GPU figures in one JSON line on stdout:
#   {"gpu", "detector_ms", "plate_ms", "face_ms", "faiss_1m_qps", "cameras_at_1fps"}
# On a machine with an NVIDIA GPU and this project copied over: sets up .venv (where nvidia-smi
# runs, infra/setup_env.sh swaps in requirements-gpu.txt: onnxruntime-gpu, faiss-gpu), builds or
# verifies the models, then runs bench/gpu.py (what each figure is: its docstring). Everything
# but the JSON line goes to stderr. Without a GPU it measures the CPU ("gpu": null).
#
#   bash bench/gpu.sh [bench/gpu.py options, e.g. --quick --workers 8]
#   SKIP_SETUP=1 bash bench/gpu.sh ...   # use .venv as it is (no setup, no model build)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2
else
  echo "[gpu.sh] no working nvidia-smi: the figures are the CPU's" >&2
fi
if [ "${SKIP_SETUP:-0}" != 1 ]; then
  bash infra/setup_env.sh >&2
  .venv/bin/camflow models build >&2
fi
exec .venv/bin/python -m bench.gpu "$@"
