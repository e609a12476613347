"""The one way camflow opens an ONNX model: ONNX Runtime on the best provider present.

TensorRT (opt-in), then CUDA (``onnxruntime-gpu``), else CPU; a GPU provider that is listed
but cannot start falls back to the CPU, so the same code runs on every machine.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

GPU_PROVIDERS = ("CUDAExecutionProvider",)
TENSORRT_ENV = "CAMFLOW_ORT_TENSORRT"  # opt in to the TensorRT provider (needs TRT libraries)


def open_session(model_path: str | os.PathLike, threads: int = 1,
                 providers: Sequence[Any] | None = None):
    """An ``InferenceSession`` with ``intra_op_num_threads=threads`` (0: every core) and
    ``inter_op_num_threads=1``, sequential execution, so that several operators can share a
    TaskManager's cores predictably."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if providers is None:
        available = set(ort.get_available_providers())
        chosen: list[Any] = []
        if os.environ.get(TENSORRT_ENV) == "1" and "TensorrtExecutionProvider" in available:
            chosen.append("TensorrtExecutionProvider")
        gpu = [p for p in GPU_PROVIDERS if p in available]
        if gpu and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu's CUDA libraries come as pip wheels: without this the CUDA
            # provider cannot find them and every session silently runs on the CPU.
            ort.preload_dlls()
        chosen += gpu
        chosen.append("CPUExecutionProvider")
    else:
        chosen = list(providers)
    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=chosen)
    except Exception:
        if chosen == ["CPUExecutionProvider"]:
            raise
        # A GPU provider that is listed but cannot start (missing CUDA/TRT libraries).
        return ort.InferenceSession(str(model_path), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
