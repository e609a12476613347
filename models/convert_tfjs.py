"""Convert a TF.js graph model (model.json + weight shards) to ONNX.

Runs ONLY inside the converter venv that ``camflow.models.build`` creates under the cache
folder (tensorflow-cpu + tf2onnx + onnx); the runtime venv never imports this file.

    python convert_tfjs.py MODEL.json OUT.onnx [--opset 17] [--outputs name,...]

Steps (each is a hurdle the stock tools do not clear on their own):

1. ``modelTopology`` is a GraphDef in protobuf-JSON form: parse it with ``json_format``.
2. Const nodes carry no tensor data: it lives in the ``weightsManifest`` shards, concatenated
   in manifest order. Decode each entry (float16 / uint8 / uint16 quantisation included) and
   write it into the Const node's ``value`` tensor.
3. tfjs-converter emits fused ops: ``_FusedConv2D`` (a TF-internal op that lacks ``TArgs``
   in the JSON) and ``FusedDepthwiseConv2dNative`` (a tfjs-only op that TF does not have).
   Both are split back into plain ``Conv2D``/``DepthwiseConv2dNative`` + ``BiasAdd`` +
   activation, keeping the fused node's name on the last op so consumers still resolve.
4. The JSON drops attributes that equal their default: refill every missing attr from TF's
   op registry (``op_def_registry``), and derive ``TArgs`` for any remaining fused op.
5. ``tf2onnx.convert.from_graph_def`` with a fixed opset. numpy 2 removed ``np.product``,
   which tf2onnx 1.17 still calls: shim it before importing tf2onnx.
6. Determinism: tf2onnx output varies with the string-hash seed (sets of node names in its
   optimizers) and in node order/generated names; PYTHONHASHSEED is pinned to 0 and the
   ONNX graph is canonicalised (see ``canonicalize``), making the bytes reproducible.

The output is checked against TensorFlow on a deterministic pseudo-random input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# tf2onnx's optimizers iterate over sets of node names, so the graph it emits depends on the
# string-hash seed: pin it (re-exec once) so that conversion is byte-deterministic.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np

# numpy 2 removed these aliases; tf2onnx 1.17 still uses some of them.
for _alias, _target in (("product", "prod"), ("cumproduct", "cumprod"), ("alltrue", "all"),
                        ("sometrue", "any")):
    if not hasattr(np, _alias):
        setattr(np, _alias, getattr(np, _target))

import tensorflow as tf  # noqa: E402

# Grappler's graph passes (run by tf2onnx) can emit a slightly different graph when they run
# in parallel on a loaded machine (seen: one extra Reshape on a first, busy run). One thread
# each keeps the conversion byte-reproducible; it costs a few seconds.
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)
from google.protobuf import json_format  # noqa: E402
from tensorflow.core.framework import attr_value_pb2, graph_pb2, node_def_pb2  # noqa: E402
from tensorflow.python.framework import op_def_registry, tensor_util  # noqa: E402

TFJS_DTYPES = {
    "float32": np.float32, "int32": np.int32, "bool": np.bool_, "complex64": np.complex64,
}
QUANT_DTYPES = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def log(msg: str) -> None:
    print(f"[convert_tfjs] {msg}", file=sys.stderr, flush=True)


def read_weights(model_json: dict, base: Path) -> dict[str, np.ndarray]:
    """Decode every tensor listed in ``weightsManifest`` (shards are concatenated per group)."""
    out: dict[str, np.ndarray] = {}
    for group in model_json["weightsManifest"]:
        buf = b"".join((base / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = [int(s) for s in spec["shape"]]
            count = int(np.prod(shape)) if shape else 1
            dtype = spec["dtype"]
            quant = spec.get("quantization")
            if dtype == "string":
                raise NotImplementedError(f"string weights unsupported ({spec['name']})")
            if quant:
                qdtype = np.dtype(QUANT_DTYPES[quant["dtype"]])
                nbytes = count * qdtype.itemsize
                raw = np.frombuffer(buf, qdtype, count, offset)
                if quant["dtype"] == "float16":
                    values = raw.astype(np.float32)
                else:  # affine uint8/uint16: value = q * scale + min
                    values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(
                        quant["min"])
                values = values.astype(TFJS_DTYPES[dtype])
            else:
                ndtype = np.dtype(TFJS_DTYPES[dtype])
                nbytes = count * ndtype.itemsize
                values = np.frombuffer(buf, ndtype, count, offset).copy()
            offset += nbytes
            out[spec["name"]] = values.reshape(shape)
        if offset != len(buf):
            raise ValueError(f"weights group used {offset} of {len(buf)} bytes")
    return out


def _attr_list_s(node: node_def_pb2.NodeDef, key: str) -> list[str]:
    return [s.decode() for s in node.attr[key].list.s] if key in node.attr else []


def _copy_conv_attrs(src: node_def_pb2.NodeDef, dst: node_def_pb2.NodeDef, op: str) -> None:
    allowed = {a.name for a in op_def_registry.get(op).attr}
    for key, value in src.attr.items():
        if key in allowed:
            dst.attr[key].CopyFrom(value)


def unfuse(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """Split tfjs fused conv nodes into Conv2D/DepthwiseConv2dNative + BiasAdd + activation."""
    base_op = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
               "_FusedDepthwiseConv2dNative": "DepthwiseConv2dNative"}
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph.versions)
    out.library.CopyFrom(graph.library)
    for node in graph.node:
        if node.op not in base_op:
            out.node.add().CopyFrom(node)
            continue
        fused = _attr_list_s(node, "fused_ops")
        num_args = node.attr["num_args"].i if "num_args" in node.attr else 0
        data_in, filt = node.input[0], node.input[1]
        args = list(node.input[2:2 + num_args])
        steps: list[tuple[str, list[str], dict]] = []
        conv_op = base_op[node.op]
        steps.append((conv_op, [data_in, filt], {}))
        arg_i = 0
        for op in fused:
            if op == "BiasAdd":
                steps.append(("BiasAdd", [args[arg_i]], {}))
                arg_i += 1
            elif op in ("Relu", "Relu6", "Elu", "Sigmoid", "Tanh"):
                steps.append((op, [], {}))
            elif op == "LeakyRelu":
                alpha = node.attr["leakyrelu_alpha"].f if "leakyrelu_alpha" in node.attr else 0.2
                steps.append(("LeakyRelu", [], {"alpha": attr_value_pb2.AttrValue(f=alpha)}))
            elif op == "Prelu":
                steps.append(("Prelu", [args[arg_i]], {}))
                arg_i += 1
            else:
                raise NotImplementedError(f"{node.name}: fused op {op!r} not supported")
        prev = None
        for i, (op, extra_inputs, attrs) in enumerate(steps):
            new = out.node.add()
            new.name = node.name if i == len(steps) - 1 else f"{node.name}/__unfused_{i}_{op}"
            new.device = node.device
            if op == "Prelu":  # prelu(x) = relu(x) - alpha * relu(-x)
                raise NotImplementedError("fused Prelu")
            new.op = op
            new.input.extend(([prev] if prev else []) + extra_inputs)
            if i == 0:
                _copy_conv_attrs(node, new, op)
            else:
                new.attr["T"].CopyFrom(node.attr["T"])
                if op == "BiasAdd" and "data_format" in node.attr:
                    new.attr["data_format"].CopyFrom(node.attr["data_format"])
            for k, v in attrs.items():
                new.attr[k].CopyFrom(v)
            prev = new.name
    return out


def fill_default_attrs(graph: graph_pb2.GraphDef) -> None:
    """Add attributes the tfjs JSON omitted because they equal the op's default."""
    for node in graph.node:
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            raise ValueError(f"op {node.op!r} ({node.name}) is not a TensorFlow op")
        for attr in op_def.attr:
            if attr.name not in node.attr and attr.HasField("default_value"):
                node.attr[attr.name].CopyFrom(attr.default_value)
        if node.op.startswith("_Fused") and "TArgs" not in node.attr:
            n = node.attr["num_args"].i
            node.attr["TArgs"].list.type.extend([node.attr["T"].type] * n)
        # Attributes that are only written by grappler confuse nothing but are noise in ONNX.
        for key in [k for k in node.attr if k.startswith("_grappler")]:
            del node.attr[key]


def load_tfjs_graph(model_path: Path) -> tuple[graph_pb2.GraphDef, dict]:
    model_json = json.loads(model_path.read_text())
    graph = json_format.ParseDict(model_json["modelTopology"], graph_pb2.GraphDef(),
                                  ignore_unknown_fields=True)
    weights = read_weights(model_json, model_path.parent)
    used = set()
    for node in graph.node:
        if node.op == "Const":
            if node.name not in weights:
                raise KeyError(f"no weights for Const {node.name}")
            value = weights[node.name]
            node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
            node.attr["dtype"].type = node.attr["value"].tensor.dtype
            used.add(node.name)
    missing = set(weights) - used
    if missing:
        log(f"warning: {len(missing)} weights have no Const node: {sorted(missing)[:5]}")
    graph = unfuse(graph)
    fill_default_attrs(graph)
    return graph, model_json


def run_tf(graph: graph_pb2.GraphDef, feeds: dict[str, np.ndarray], outputs: list[str]):
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(graph, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        return sess.run(outputs, feed_dict=feeds)


def canonicalize(model):
    """Make the ONNX bytes a function of the graph's structure only.

    tf2onnx (via grappler) emits the same graph with nodes in varying order and with varying
    generated names (``Transpose__809`` vs ``Transpose__815``). Here every value gets a
    structural signature (a Merkle hash over op, attributes and input signatures; initializers
    hash their content), duplicates are merged, nodes are topologically sorted with the
    signature as tie-break, and every internal name is rewritten from that order.
    """
    import hashlib

    import onnx

    graph = model.graph
    sig: dict[str, str] = {}
    for inp in graph.input:
        sig[inp.name] = "input:" + inp.name
    init_by_sig: dict[str, onnx.TensorProto] = {}
    for init in graph.initializer:
        t = onnx.TensorProto()
        t.CopyFrom(init)
        t.name = ""
        s = "init:" + hashlib.sha256(t.SerializeToString(deterministic=True)).hexdigest()
        sig[init.name] = s
        init_by_sig.setdefault(s, init)
    sig[""] = "none"  # optional inputs left empty

    producers = {out: node for node in graph.node for out in node.output if out}
    node_sig: dict[int, str] = {}

    def attr_bytes(node) -> bytes:
        return b"".join(a.SerializeToString(deterministic=True)
                        for a in sorted(node.attribute, key=lambda a: a.name))

    def signature(node) -> str:
        key = id(node)
        if key in node_sig:
            return node_sig[key]
        stack = [node]
        while stack:  # iterative post-order over producers
            cur = stack[-1]
            pending = [producers[i] for i in cur.input
                       if i not in sig and id(producers[i]) not in node_sig]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if id(cur) in node_sig:
                continue
            h = hashlib.sha256()
            h.update(f"{cur.domain}:{cur.op_type}|".encode())
            h.update(attr_bytes(cur))
            for i in cur.input:
                h.update(b"|" + sig[i].encode())
            s = h.hexdigest()
            node_sig[id(cur)] = s
            for k, out in enumerate(cur.output):
                if out:
                    sig[out] = f"{s}:{k}"
        return node_sig[key]

    for node in graph.node:
        signature(node)

    # Merge duplicate nodes (identical signature): keep one per signature.
    unique: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        unique.setdefault(node_sig[id(node)], node)

    # Topological sort, ties broken by signature.
    import heapq

    value_ready = {v for v, s in sig.items() if s.startswith(("input:", "init:")) or v == ""}
    ready_sigs = {sig[v] for v in value_ready}
    consumers: dict[str, list[str]] = {}
    waiting: dict[str, int] = {}
    for s, node in unique.items():
        ins = {sig[i] for i in node.input} - ready_sigs
        waiting[s] = len(ins)
        for i in ins:
            consumers.setdefault(i, []).append(s)
    heap = [s for s, n in waiting.items() if n == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        s = heapq.heappop(heap)
        order.append(s)
        for k, out in enumerate(unique[s].output):
            for c in consumers.get(f"{s}:{k}", []):
                waiting[c] -= 1
                if waiting[c] == 0:
                    heapq.heappush(heap, c)
    if len(order) != len(unique):
        raise RuntimeError("graph has a cycle or dangling input")

    keep = {o.name for o in graph.output} | {i.name for i in graph.input}
    sig_name: dict[str, str] = {}
    for v in keep:
        sig_name[sig[v]] = v
    init_sigs = sorted(init_by_sig)
    for n, s in enumerate(init_sigs):
        sig_name.setdefault(s, f"const_{n}")
    sig_name["none"] = ""
    new_nodes = []
    for n, s in enumerate(order):
        old = unique[s]
        node = onnx.NodeProto()
        node.op_type, node.domain = old.op_type, old.domain
        node.name = f"{old.op_type}_{n}"
        node.attribute.extend(sorted(old.attribute, key=lambda a: a.name))
        for k, out in enumerate(old.output):
            if out:
                sig_name.setdefault(f"{s}:{k}", f"{old.op_type}_{n}:{k}")
        node.input.extend(sig_name[sig[i]] for i in old.input)
        node.output.extend(sig_name[f"{s}:{k}"] if out else "" for k, out in enumerate(old.output))
        new_nodes.append(node)
    new_inits = []
    for s in init_sigs:
        t = onnx.TensorProto()
        t.CopyFrom(init_by_sig[s])
        t.name = sig_name[s]
        new_inits.append(t)
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_json", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--outputs", default="", help="comma-separated tensor names "
                        "(default: the signature's outputs)")
    parser.add_argument("--no-check", action="store_true", help="skip the TF vs ONNX check")
    args = parser.parse_args(argv)

    t0 = time.time()
    graph, model_json = load_tfjs_graph(args.model_json)
    sig = model_json.get("signature", {})
    inputs = [n for n in graph.node if n.op == "Placeholder"]
    input_names = [f"{n.name}:0" for n in inputs]
    if args.outputs:
        output_names = [o if ":" in o else f"{o}:0" for o in args.outputs.split(",")]
    else:
        output_names = [f"{k}:0" for k in sig.get("outputs", {})]
    log(f"graph: {len(graph.node)} nodes, inputs={input_names}, outputs={output_names}")

    import tf2onnx  # noqa: E402  (after the numpy shim)

    model_proto, _ = tf2onnx.convert.from_graph_def(
        graph, input_names=input_names, output_names=output_names, opset=args.opset)
    # Keep the file byte-stable: no timestamps, fixed producer fields.
    model_proto.doc_string = f"converted from {args.model_json.name} by camflow convert_tfjs"
    model_proto = canonicalize(model_proto)
    tmp = args.output.with_suffix(args.output.suffix + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(model_proto.SerializeToString(deterministic=True))

    if not args.no_check:
        import onnxruntime as ort  # optional in the converter venv

        rng = np.random.default_rng(0)
        feeds = {}
        for node in inputs:
            shape = [d.size for d in node.attr["shape"].shape.dim]
            feeds[f"{node.name}:0"] = rng.uniform(0, 255, shape).astype(np.float32)
        ref = run_tf(graph, feeds, output_names)
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = sess.run(None, {k: v for k, v in feeds.items()})
        for name, a, b in zip(output_names, ref, got):
            err = float(np.max(np.abs(a - b))) if a.size else 0.0
            log(f"check {name}: shape {a.shape} max|tf-onnx|={err:.3g}")
            if err > 1e-2 * max(1.0, float(np.max(np.abs(a)))):
                raise SystemExit(f"ONNX output {name} differs from TensorFlow by {err}")
    os.replace(tmp, args.output)
    log(f"wrote {args.output} ({args.output.stat().st_size} bytes) in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
