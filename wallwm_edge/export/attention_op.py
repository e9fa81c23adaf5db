"""Sight-cone block-sparse attention inside the exported student: the `wallwm.BlockSparseAttention` node.

`fuse(model)` rewrites an exported student ONNX (standard ops) so that every masked attention
(softmax(scale q k^T | mask) v, as torch's exporter decomposes SDPA) becomes ONE node of the custom domain
"wallwm", which the `_C` module implements as an onnxruntime custom op (csrc/ort_ops.cpp, the CPU kernel of
csrc/attention.cpp). The rewritten file also carries the op's standard-op body as an ONNX model-local
function, so it needs nothing new to run:

    _C registered (`register(session_options)`)  -> onnxruntime runs our kernel for the node
    not registered (no `_C`, older onnxruntime)   -> onnxruntime inlines the function: the standard graph

One file, both paths; `onnx_export.session` registers the op whenever `_C` has it. The rewrite works on the
ONNX (no torch), so it applies to any exported student, the shipped one included; a graph where no
attention matches is returned unchanged (0 fused), never half-rewritten.

Why a rewrite of the ONNX instead of exporting the op from torch: the export keeps one path (dynamo or
TorchScript, standard ops, parity-gated against eager) and the op stays an on-board choice made from a
file, not a model change.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

DOMAIN = "wallwm"
OP = "BlockSparseAttention"
OP_VERSION = 1
BLOCK = 16  # block-mask tile of the kernel (ops.attention.DEFAULT_BLOCK)
NEG_LIMIT = -1e30  # a mask bias at or below this is "never attend" (torch writes float32's lowest, -3.4e38)


# ---- the op library (the `_C` module) --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def library() -> tuple[str | None, str]:
    """(path of the op library, "") when `_C` exports onnxruntime's `RegisterCustomOps`, else (None, why)."""
    try:
        from wallwm_edge import _C
    except ImportError as e:
        return None, f"wallwm_edge._C is not built ({e})"
    try:
        ctypes.CDLL(_C.__file__).RegisterCustomOps  # noqa: B018 - the lookup is the check
    except (OSError, AttributeError):
        return None, "wallwm_edge._C was built without the onnxruntime op (csrc/ort_ops.cpp): rebuild it"
    return _C.__file__, ""


THREADS_KEY = "wallwm.intra_op_num_threads"  # session config the op reads (csrc/ort_ops.cpp kThreadsKey)


def register(opts, enable: bool = True) -> bool:
    """Register the op library on onnxruntime SessionOptions `opts`; False (nothing registered) when it cannot
    load, when `enable` is False, or when WALLWM_ORT_OPS=0 (then graphs with the node run its standard body).

    Call it after setting `opts.intra_op_num_threads`: the op learns the session's thread count from a config
    entry (onnxruntime >= 1.24) and, on one thread, runs all heads in one kernel call instead of one per head."""
    if not enable or os.environ.get("WALLWM_ORT_OPS", "1") == "0":
        return False
    path, _ = library()
    if path is None:
        return False
    try:
        opts.add_session_config_entry(THREADS_KEY, str(int(opts.intra_op_num_threads)))
        opts.register_custom_ops_library(path)
    except Exception:  # an onnxruntime too old for the library's C API: the standard body runs instead
        return False
    return True


def count_nodes(model) -> int:
    """How many `wallwm.BlockSparseAttention` nodes a ModelProto's main graph has."""
    return sum(1 for n in model.graph.node if n.domain == DOMAIN and n.op_type == OP)


# ---- the standard-op body (the fallback) ----------------------------------------------------------------------


def function_proto(opset: int):
    """The op as standard ONNX ops: what onnxruntime runs when the op library is not registered.

    Scores are scaled after q k^T by the calling node's `scale` attribute (required here: the kernel defaults
    it to 1/sqrt(D), a function body cannot, and `fuse` always writes it); masked entries
    are -inf, so a row with no allowed key is all NaN after Softmax and is set to zeros (the kernel's and
    model.attention.masked_attention's convention).
    """
    from onnx import AttributeProto, helper

    def const(name, value):
        return helper.make_node("Constant", [], [name], value_float=float(value))

    scale = helper.make_node("Constant", [], ["scale_c"])
    scale.attribute.append(AttributeProto(name="value_float", ref_attr_name="scale", type=AttributeProto.FLOAT))
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["s0"]),
        scale,
        helper.make_node("Mul", ["s0", "scale_c"], ["s1"]),
        const("ninf", -np.inf),
        helper.make_node("Where", ["mask", "s1", "ninf"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["p0"], axis=-1),
        helper.make_node("IsNaN", ["p0"], ["nan"]),
        const("zero", 0.0),
        helper.make_node("Where", ["nan", "zero", "p0"], ["p"]),
        helper.make_node("MatMul", ["p", "v"], ["out"]),
    ]
    fn = helper.make_function(DOMAIN, OP, ["q", "k", "v", "mask"], ["out"], nodes, [helper.make_opsetid("", opset)],
                              attributes=["scale", "block"])
    fn.doc_string = "softmax(scale q k^T | mask) v with zeros for rows that see no key (wallwm_edge/export/attention_op.py)"
    return fn


# ---- the rewrite --------------------------------------------------------------------------------------------


class _Graph:
    """Producer / consumer / constant look-ups over a GraphProto."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.model, graph = model, model.graph
        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.init = {t.name: t for t in graph.initializer}
        self._np = numpy_helper

    def const(self, name: str) -> np.ndarray | None:
        if name in self.init:
            return self._np.to_array(self.init[name])
        n = self.producer.get(name)
        if n is not None and n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    return self._np.to_array(a.t)
                if a.name == "value_float":
                    return np.asarray(a.f, np.float32)
        return None

    def scalar(self, name: str) -> float | None:
        c = self.const(name)
        return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else None

    def only_consumer(self, name: str, op_type: str):
        cs = self.consumers.get(name, [])
        return cs[0] if len(cs) == 1 and cs[0].op_type == op_type else None


def _unscale(g: _Graph, name: str, shapes: dict, base: str | None = None) -> tuple[str, float]:
    """(tensor before a Mul by a scalar, that scalar); (name, 1) when there is none. The scalar is a constant
    (dynamo) or computed from a tensor's shape (TorchScript writes sqrt(1/sqrt(D)) from Shape(q)): then it is
    evaluated from `base` (default: the Mul's other input), and refused if it needs anything else."""
    n = g.producer.get(name)
    if n is not None and n.op_type == "Mul":
        for a, b in ((0, 1), (1, 0)):
            c = g.scalar(n.input[b])
            if c is None:
                src = base or n.input[a]
                val = _evaluate(g, src, n.input[b], shapes.get(src))
                c = float(val.reshape(-1)[0]) if val is not None and val.size == 1 else None
            if c is not None:
                return n.input[a], c
    return name, 1.0


def _untranspose(g: _Graph, name: str, shapes: dict) -> str | None:
    """The (B, H, S, D) tensor whose last two axes `name` swaps: walks back through the exporter's Reshape /
    Transpose chain (torch writes k^T as Reshape -> Transpose -> Reshape with computed shapes, which ONNX shape
    inference cannot follow), then proves the chain is that transpose by running it. None otherwise."""
    t, chain = name, []
    while len(chain) < 6:
        n = g.producer.get(t)
        if n is None or n.op_type not in ("Reshape", "Transpose"):
            break
        chain.append(n)
        t = n.input[0]
    src = shapes.get(t)
    if not chain or src is None or len(src) != 4 or None in src[1:] or src[2] == src[3]:
        return None
    return t if _is_last_two_transpose(g, t, name, src) else None


def _is_last_two_transpose(g: _Graph, src: str, dst: str, shape: tuple) -> bool:
    """Run the nodes between `src` and `dst` on a random (2, H, S, D) input: is `dst` its (2, H, D, S) transpose?"""
    x = np.random.default_rng(0).standard_normal((2, *shape[1:])).astype(np.float32)
    y = _evaluate(g, src, dst, shape, x)
    return y is not None and y.shape == (2, shape[1], shape[3], shape[2]) and np.array_equal(y, np.swapaxes(x, -1, -2))


def _evaluate(g: _Graph, src: str, dst: str, shape: tuple | None, x: np.ndarray | None = None) -> np.ndarray | None:
    """`dst` computed from `src` alone (value `x`, default random of `shape` with batch 2) by the graph's own nodes
    in onnxruntime; None when `dst` needs another graph input, or the shape is not static past the batch axis."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    if x is None:
        if shape is None or len(shape) < 2 or None in shape[1:]:
            return None
        x = np.random.default_rng(0).standard_normal((2, *shape[1:])).astype(np.float32)
    nodes, todo, seen = [], [dst], set()
    while todo:
        t = todo.pop()
        if t in seen or t == src or t in g.init or t == "":
            continue
        seen.add(t)
        n = g.producer.get(t)
        if n is None or len(nodes) > 64:
            return None  # another graph input (not a function of src alone), or far more than a scale or a transpose
        nodes.append(n)
        todo.extend(n.input)
    if src not in seen and not any(src in n.input for n in nodes):
        return None
    keep = {id(n) for n in nodes}
    order = [n for n in g.graph.node if id(n) in keep]
    used = {i for n in order for i in n.input}
    inits = [g.init[i] for i in used if i in g.init]
    sub = helper.make_graph(order, "probe", [helper.make_tensor_value_info(src, onnx.TensorProto.FLOAT, None)],
                            [helper.make_tensor_value_info(dst, onnx.TensorProto.FLOAT, None)], initializer=inits)
    opsets = [o for o in g.model.opset_import if o.domain in ("", "ai.onnx")]
    model = helper.make_model(sub, opset_imports=opsets, ir_version=g.model.ir_version)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.asarray(sess.run(None, {src: x})[0])
    except Exception:  # anything onnxruntime refuses is simply not our pattern
        return None


def _shapes(model, feeds: dict[str, np.ndarray] | None = None) -> dict[str, tuple]:
    """name -> shape (None for an unknown axis) of every tensor ONNX shape inference can follow, and, given
    `feeds`, of the tensors q, k, v and their scales can be, measured on them (torch's TorchScript exporter
    writes q, k and v through Reshapes of computed shapes, which inference cannot follow). Measured shapes keep
    the batch axis unknown, as an exported graph has it."""
    inferred = _inferred(model)
    out = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    if feeds:
        out.update({k: v for k, v in _measured_shapes(model, feeds).items() if None in out.get(k, (None,))})
    return out


def _inferred(model):
    """`model` with ONNX shape inference's value_info; the model as it is where inference refuses it (a converted
    float16 graph's stored types can contradict inference)."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # onnx raises InferenceError / ValidationError / RuntimeError by version
        return model


def _elem_types(model) -> dict[str, int]:
    """name -> ONNX element type of every tensor shape inference types (float16 graphs type them all)."""
    inferred = _inferred(model)
    vis = (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    return {vi.name: vi.type.tensor_type.elem_type for vi in vis if vi.type.tensor_type.elem_type}


def _measured_shapes(model, feeds: dict[str, np.ndarray]) -> dict[str, tuple]:
    """Shapes of the outputs of the graph's MatMul / Mul / Transpose / Reshape / Gather / Split / Slice nodes (where
    q, k, v and their scaling live) on `feeds`, batch axis reported as None."""
    import onnx
    import onnxruntime as ort

    from wallwm_edge.export import onnx_export

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    names = [o for n in probe.graph.node if n.op_type in ("MatMul", "Mul", "Transpose", "Reshape", "Gather", "Split", "Slice")
             for o in n.output if o and o not in have]
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    opts = ort.SessionOptions()
    opts.log_severity_level, opts.intra_op_num_threads = 3, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every probed tensor
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        got = onnx_export.run(sess, feeds)
    except Exception:  # a graph onnxruntime cannot run this way: shape inference alone decides
        return {}
    batch = next(iter(feeds.values())).shape[0]
    return {n: (None, *a.shape[1:]) if a.ndim and a.shape[0] == batch else tuple(a.shape) for n, a in got.items() if n in names}


def _match(g: _Graph, sm, shapes: dict):
    """One attention around Softmax node `sm`: (q, k, v, mask, scale, out, nodes to drop), or None.

    The pattern is torch's SDPA decomposition with a boolean mask:
        scores = MatMul(q * c1, transpose(k) * c2) + Where(mask, 0, low);  p = Softmax(scores)
        p = Where(IsNaN(p), 0, p)  (optional);  out = MatMul(p, v)
    with `low` -inf or float32's lowest (torch writes finfo.min). The two differ from the op only on a row with
    no allowed key (mean of v there, zeros from the op), which the model never produces:
    model.attention.masked_attention opens such rows before SDPA and zeroes their output after it.
    """
    axis = [a.i for a in sm.attribute if a.name == "axis"]
    if axis and axis[0] not in (-1, 3):
        return None
    add = g.producer.get(sm.input[0])
    if add is None or add.op_type != "Add":
        return None
    mm = bias = None
    for a, b in ((0, 1), (1, 0)):
        pa, pb = g.producer.get(add.input[a]), g.producer.get(add.input[b])
        if pa is not None and pa.op_type == "MatMul" and pb is not None and pb.op_type == "Where":
            mm, bias = pa, pb
    low = g.scalar(bias.input[2]) if mm is not None else None
    if mm is None or g.scalar(bias.input[1]) != 0.0 or low is None or low > NEG_LIMIT:
        return None
    mask = bias.input[0]
    q, c1 = _unscale(g, mm.input[0], shapes)
    kt, c2 = _unscale(g, mm.input[1], shapes, base=q)
    k = _untranspose(g, kt, shapes)
    if k is None:
        return None
    drop = [add, mm, sm]  # the mask bias is shared by every layer's attention: _prune drops it once unused
    drop += [g.producer[n] for n in (mm.input[0], mm.input[1]) if g.producer.get(n) is not None and g.producer[n].op_type == "Mul"]
    p = sm.output[0]
    isnan = next((c for c in g.consumers.get(p, []) if c.op_type == "IsNaN"), None)
    if isnan is not None:
        where = g.only_consumer(isnan.output[0], "Where")
        if where is None or where.input[2] != p or g.scalar(where.input[1]) != 0.0:
            return None
        drop += [isnan, where]
        p = where.output[0]
    pv = g.only_consumer(p, "MatMul")
    if pv is None or pv.input[0] != p:
        return None
    drop.append(pv)
    v = pv.input[1]
    sq, sk, sv = shapes.get(q), shapes.get(k), shapes.get(v)
    if any(s is None or len(s) != 4 for s in (sq, sk, sv)):
        return None
    # Every intermediate must feed only this attention: a score or probability read elsewhere cannot go.
    inner = {o for n in drop for o in n.output} - {pv.output[0]}
    if any(c not in drop for t in inner for c in g.consumers.get(t, [])):
        return None
    return q, k, v, mask, c1 * c2, pv.output[0], drop


def _prune(graph) -> None:
    """Drop nodes whose outputs nobody reads (the K transpose chain the op no longer needs), and stale value_info."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.output and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input} | outputs
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)
    produced = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    for vi in [vi for vi in graph.value_info if vi.name not in produced]:
        graph.value_info.remove(vi)


def fuse(model, block: int = BLOCK, feeds: dict[str, np.ndarray] | None = None):
    """(a copy of `model` with every matched attention as one wallwm.BlockSparseAttention node, how many).

    The model's opset gains domain "wallwm" v1 and the op's standard body as a model-local function. With
    no match the copy is the unchanged model and the count is 0; float16 attentions are not matched (the
    kernel is float32). `feeds` (one input batch) lets shapes be
    measured where ONNX shape inference gives up (TorchScript exports need it; dynamo ones do not).
    """
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    if count_nodes(out):
        return out, count_nodes(out)  # already fused
    g = _Graph(out)
    shapes = _shapes(out, feeds)
    matches = [m for m in (_match(g, n, shapes) for n in list(out.graph.node) if n.op_type == "Softmax") if m is not None]
    types = _elem_types(out)
    # The kernel is float32 only: an attention in float16 (a converted fp16 graph) keeps its standard ops.
    matches = [m for m in matches if all(types.get(t, onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT for t in m[:3])]
    if not matches:
        return out, 0
    for i, (q, k, v, mask, scale, o, drop) in enumerate(matches):
        at = min(list(out.graph.node).index(n) for n in drop)  # keep topological order: where the attention began
        for n in drop:
            out.graph.node.remove(n)
        node = helper.make_node(OP, [q, k, v, mask], [o], name=f"{OP}_{i}", domain=DOMAIN, scale=float(scale), block=int(block))
        out.graph.node.insert(at, node)
    _prune(out.graph)
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), 18)
    out.opset_import.append(helper.make_opsetid(DOMAIN, OP_VERSION))
    out.functions.append(function_proto(opset))
    _topo_sort(out.graph)
    onnx.checker.check_model(out)
    return out, len(matches)


def _topo_sort(graph) -> None:
    """Re-order nodes so every input is produced before it is read (the new node's K may come from later)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [i for i, n in enumerate(pending) if all(x in available for x in n.input)]
        if not ready:
            raise ValueError("attention_op: the rewritten graph has a cycle")
        for i in ready:
            ordered.append(pending[i])
            available.update(pending[i].output)
        keep = set(range(len(pending))) - set(ready)
        pending = [pending[i] for i in sorted(keep)]
    del graph.node[:]
    graph.node.extend(ordered)


def fuse_file(src: str | os.PathLike, dst: str | os.PathLike, feeds: dict[str, np.ndarray] | None = None) -> int:
    """Fuse `src` into `dst` (may be the same path); returns the number of attention nodes in `dst`."""
    import onnx

    model, n = fuse(onnx.load(str(src)), feeds=feeds)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return n


# ---- an exported student, in place ------------------------------------------------------------------------------


def _session(path, custom_ops: bool):
    from wallwm_edge.export import onnx_export

    return onnx_export.session(path, threads=1, custom_ops=custom_ops)


def outputs_matrix(sess, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Every output of `sess` on every feed, one row per sample (all outputs flattened side by side)."""
    from wallwm_edge.export import onnx_export

    rows = []
    for f in feeds:
        out = onnx_export.run(sess, f)
        b = next(iter(out.values())).shape[0]
        rows.append(np.concatenate([np.asarray(v, np.float64).reshape(b, -1) for v in out.values()], axis=1))
    return np.concatenate(rows)


def fuse_export(onnx_path: str | os.PathLike, feeds: list[dict[str, np.ndarray]], precision: str = "fp32") -> dict:
    """Fuse an exported graph (with its sidecar) in place, gated; returns what was recorded in the sidecar.

    The fused file is compared with the standard one it replaces on `feeds`, twice: with `_C`'s op registered
    (when it loads here) and with the standard-op body. Both must pass the `precision` parity gate, else
    ParityError and the standard file stays as it was. The sidecar gains "attention_op" (nodes, op, the two
    reports) and its sha256 is renewed. A graph with no attention to fuse is left alone ({"nodes": 0}).
    """
    import onnx

    from wallwm_edge.export import parity
    from wallwm_edge.export.sidecar import read_sidecar, write_sidecar

    onnx_path = Path(onnx_path)
    fused, n = fuse(onnx.load(str(onnx_path)), feeds=feeds[0] if feeds else None)
    if n == 0:
        return {"nodes": 0}
    tmp = onnx_path.with_name(onnx_path.stem + ".fused.tmp.onnx")
    try:
        onnx.save(fused, str(tmp))
        ref = outputs_matrix(_session(onnx_path, False), feeds)
        loaded = library()[0] is not None
        reports = []
        for with_op in ((True, False) if loaded else (False,)):
            got = outputs_matrix(_session(tmp, with_op), feeds)
            what = f"_C op ({library_isa()})" if with_op else "standard-op body"
            rep = parity.compare(f"{onnx_path.name} fused, {what} vs standard graph", ref, got, precision)
            reports.append(parity.enforce(rep))
        record = read_sidecar(onnx_path, check_hash=True)
        info = {k: v for k, v in record.items() if k not in ("format", "onnx", "sha256")}
        info["attention_op"] = {"nodes": n, "op": f"{DOMAIN}.{OP}", "block": BLOCK, "op_loaded_at_export": loaded,
                                "parity": [r.to_json() for r in reports]}
        os.replace(tmp, onnx_path)
        write_sidecar(onnx_path, info)
    finally:
        tmp.unlink(missing_ok=True)
    return info["attention_op"]


def library_isa() -> str:
    """The instruction-set path the `_C` CPU attention runs here ("avx512", "avx2", "neon", ...), or "none"."""
    from wallwm_edge.ops import ext

    if not ext.has("attention_cpu_path"):
        return "none"
    return str(ext.require("attention_cpu_path")("")[0])
