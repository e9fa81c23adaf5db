"""Post-training quantization of an exported student: float16 and int8 (QDQ) variants of a float32 ONNX.

Both use onnxruntime's own tools (`onnxruntime.quantization.quantize_static`, and the float16
converter that ships with onnxruntime.transformers) rather than a hand-written pass: they know which
ops each execution provider fuses, and the QDQ format they write is exactly what TensorRT's explicit
int8 path and onnxruntime's CPU int8 kernels consume.

Choices, and why:
- QDQ (QuantizeLinear/DequantizeLinear pairs around float ops), not QOperator: one file serves
  onnxruntime on the host and TensorRT on the Jetson (TensorRT reads QDQ, not QLinearMatMul).
- Symmetric int8 for activations and weights, per-channel weights: TensorRT requires symmetric
  scales; per-channel keeps narrow-range output channels of the projections accurate.
- Only MatMul/Gemm with a weight operand are quantized: they hold nearly all the parameters and most
  FLOPs; quantizing Add/Softmax/LayerNorm, or the attention products between two activations, buys
  little speed and costs accuracy (see `weight_matmuls`).
- The action boundary stays float (float32 here, float16 in the fp16 variant only where safe): the
  time embedding, the action input/output projections and their norm, and the termination head
  (`wallwm_edge.model.boundary.ACTION_BOUNDARY`, the one list every variant uses). Public Jetson work
  on world action models found these break under int8: the time embedding's sinusoid features and the
  action projections carry small, precise values that one int8 scale per tensor cannot resolve.
  They are found by module path in the ONNX metadata (`onnx_export.nodes_under`), never by node name.
- Calibration uses real dataset batches (the caller passes feeds built from episodes), never random
  tensors: activation ranges of random images are not the ranges the robot sees. The default
  method is percentile (99.999th): on a 1500-step mw64 student the worst-sample cosine vs eager was
  0.9949 with it, 0.9840 with min-max (one outlier activation stretches a whole tensor's scale).
  onnxruntime's entropy method is not offered: quantize_static cannot set its histogram size, and with
  the default (128 bins for 128 quantized bins) the only candidate threshold is the full range, so it
  wrote exactly the min-max scales.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError
from wallwm_edge.export.onnx_export import nodes_under
from wallwm_edge.export.parity import ParityError
from wallwm_edge.model.boundary import ACTION_BOUNDARY  # any module whose dotted path has one of these stays float
QUANT_OPS = ("MatMul", "Gemm")
CALIB_METHODS = ("percentile", "minmax")  # activation range calibration; see the module docstring for entropy

INT8_REMEDY = ("int8 loses too much on this model: try more calibration data (--calib-samples 256), the other range method "
               "(--calib-method minmax), or ship fp16 instead (export --precisions fp32,fp16; quantize --precisions fp16)")


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], input_types: dict[str, np.dtype]):
        self._feeds = [{k: np.ascontiguousarray(np.asarray(v).astype(input_types.get(k, np.asarray(v).dtype)))
                        for k, v in f.items() if k in input_types} for f in feeds]
        self._i = 0

    def get_next(self):
        if self._i >= len(self._feeds):
            return None
        self._i += 1
        return self._feeds[self._i - 1]

    def rewind(self):
        self._i = 0


def _input_types(model) -> dict[str, np.dtype]:
    from onnx import helper

    out = {}
    for inp in model.graph.input:
        out[inp.name] = np.dtype(helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type))
    return out


def kept_float(model, keep: tuple[str, ...] = ACTION_BOUNDARY) -> list[str]:
    """Nodes of `model` (onnx.ModelProto) under the kept modules; ConfigError if the boundary is not found.

    Finding none would silently quantize the action boundary, so it is refused instead.
    """
    names = nodes_under(model, keep)
    if keep and not names:
        raise ConfigError(f"none of the action-boundary modules {list(keep)} appear in the ONNX's node metadata; "
                          "re-export with wallwm-edge export (dynamo exporter) or pass the right --keep module names")
    return names


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, calibration: Iterable[dict[str, np.ndarray]],
                  keep: tuple[str, ...] = ACTION_BOUNDARY, per_channel: bool = True,
                  method: str = "percentile") -> dict:
    """Write an int8 QDQ copy of the float32 ONNX `src` to `dst`, calibrated on `calibration` feeds.

    Returns {"excluded_nodes": [...], "quantized_nodes": n, "calibration_batches": n}.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ConfigError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIB_METHODS)}")
    feeds = list(calibration)
    if not feeds:
        raise ConfigError("int8 calibration needs at least one batch of dataset inputs, got none")
    model = onnx.load(str(src))
    fold_weight_transposes(model)
    excluded = kept_float(model, keep)
    targets = weight_matmuls(model, set(excluded))
    reader = _Reader(feeds, _input_types(model))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs a pre-processing hint on every call; our graphs are already shape-inferred
    # its histogram calibrators also print() their progress ("Collecting tensor data ..."): not the user's business
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                model, str(dst), reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANT_OPS),
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=targets,  # weight products only: see weight_matmuls
                nodes_to_exclude=excluded,
                calibrate_method=methods[method],
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
    finally:
        root.setLevel(level)
    q = onnx.load(str(dst))
    _float_inputs(q, set(excluded))
    onnx.save(q, str(dst))
    quantized = sum(1 for n in q.graph.node if n.op_type == "DequantizeLinear")
    if quantized == 0:
        raise ConfigError(f"{dst}: quantization inserted no int8 nodes (are there MatMul/Gemm ops outside the action boundary?)")
    return {"excluded_nodes": excluded, "dequantize_nodes": quantized, "calibration_batches": len(feeds)}


def weight_matmuls(model, excluded: set[str]) -> list[str]:
    """MatMul/Gemm nodes with a constant (weight) operand, outside `excluded`.

    Activation x activation products (attention scores q k^T and probabilities x values) stay float:
    softmax probabilities span [0, 1] with most mass far below one int8 step of a shared scale, so
    quantizing them flattens attention (measured: worst-sample cosine 0.83 vs eager on a 1500-step
    mw64 student with them quantized)."""
    consts = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node
            if n.op_type in QUANT_OPS and n.name not in excluded and any(i in consts for i in n.input)]


def fold_weight_transposes(model) -> int:
    """Replace Transpose(initializer) by a transposed initializer; returns how many nodes were folded.

    The dynamo exporter keeps `Transpose(W)` in front of a MatMul when W is used by several unrolled
    flow steps (constant folding skips shared weights). The quantizer then sees an activation, not a
    weight: it quantizes the Transpose's output on every call and keeps W in float32, so the file does
    not shrink. Folding gives each weight one transposed initializer that all steps share.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    folded: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Transpose" and node.input[0] in inits:
            perm = tuple(next((list(a.ints) for a in node.attribute if a.name == "perm"), []))
            key = (node.input[0], perm)
            if key not in folded:
                w = numpy_helper.to_array(inits[node.input[0]])
                name = f"{node.input[0]}_T" if not perm or perm == tuple(range(w.ndim))[::-1] else f"{node.input[0]}_T{''.join(map(str, perm))}"
                t = numpy_helper.from_array(np.ascontiguousarray(w.transpose(perm or None)), name)
                model.graph.initializer.append(t)
                folded[key] = name
            rename[node.output[0]] = folded[key]
        else:
            keep.append(node)
    if not rename:
        return 0
    for node in keep:
        node.input[:] = [rename.get(i, i) for i in node.input]
    for out in model.graph.output:
        if out.name in rename:
            raise ConfigError(f"graph output {out.name!r} is a transposed weight; cannot fold")
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {i for n in model.graph.node for i in n.input}
    live = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)
    return len(rename)


def _float_inputs(model, kept: set[str]) -> None:
    """Give the kept nodes their float inputs back.

    onnxruntime quantizes an activation once for all its consumers, so a kept node that shares an
    input with a quantized one reads the fake-quantized (DequantizeLinear) copy: the action boundary
    would see int8 rounding after all. Rewire such inputs to the QuantizeLinear's float input and drop
    Q/DQ nodes nobody reads any more.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name not in kept:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":  # an activation (weights have no Q node)
                node.input[i] = q.input[0]
    outputs = {o.name for o in model.graph.output}
    while True:  # prune dead Q/DQ chains
        used = {i for n in model.graph.node for i in n.input} | outputs
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike, keep: tuple[str, ...] = ACTION_BOUNDARY) -> dict:
    """Write a float16 copy of `src` with float32 inputs/outputs; the kept modules stay float32.

    For TensorRT one would rather build the float32 ONNX with the FP16 flag; this file is what the
    onnxruntime path and the parity gate check on the host.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    kept = nodes_under(model, keep)
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=kept)
    _dedupe_casts(half)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(dst))
    return {"float32_nodes": kept}


def _dedupe_casts(model) -> None:
    """The float16 converter names its Cast nodes and their outputs after the tensor they cast, so a
    tensor read by two kept nodes gets two identical Casts defining one name, which onnxruntime
    rejects. Keep the first of each identical Cast; suffix any other repeated node name."""
    defined: dict[str, tuple] = {}
    names: dict[str, int] = {}
    keep = []
    for node in model.graph.node:
        sig = (node.op_type, tuple(node.input), tuple(a.SerializeToString() for a in node.attribute))
        outs = [o for o in node.output if o]
        if node.op_type == "Cast" and outs and all(defined.get(o) == sig for o in outs):
            continue  # an exact repeat of a Cast already in the graph
        for o in outs:
            defined[o] = sig
        if node.name in names:
            names[node.name] += 1
            node.name = f"{node.name}_{names[node.name]}"
        else:
            names[node.name] = 0
        keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def size_mb(path: str | os.PathLike) -> float:
    return os.path.getsize(path) / 1e6


def variant_path(fp32_path: str | os.PathLike, precision: str) -> Path:
    """student.sample.onnx -> student.sample.int8.onnx (fp32 keeps the plain name)."""
    p = Path(fp32_path)
    return p if precision == "fp32" else p.with_name(f"{p.stem}.{precision}{p.suffix}")


def quantize_variants(model, header: dict, fp32_path: str | os.PathLike, precisions: tuple[str, ...],
                      calibration: list[dict], gate_feeds: list[dict], keep: tuple[str, ...] | None = None,
                      captions: dict | None = None, calib_method: str = "percentile") -> list[dict]:
    """Write each precision variant of the gated float32 ONNX `fp32_path`, gate it, write its sidecar.

    Gates: every variant against the eager model (the bounds of its precision) on `gate_feeds`, which
    must not overlap `calibration`. Returns one row per variant: precision, file, size_mb, parity.
    Raises ParityError (and removes the variant's files) on a miss.
    """
    from wallwm_edge.export import student as st
    from wallwm_edge.export.sidecar import read_sidecar, write_sidecar

    keep = tuple(keep) if keep is not None else ACTION_BOUNDARY
    parent = read_sidecar(fp32_path)
    kind, steps = parent["kind"], int(parent["steps"])
    captions = captions if captions is not None else parent.get("captions", {})
    rows = []
    for precision in precisions:
        if precision not in ("fp16", "int8"):
            raise ConfigError(f"unknown precision {precision!r} to quantize to; choose from fp16, int8 (fp32 is the export itself)")
        dst = variant_path(fp32_path, precision)
        extra: dict = {}
        if precision == "fp16":
            extra = convert_fp16(fp32_path, dst, keep)
        elif precision == "int8":
            extra = quantize_int8(fp32_path, dst, calibration, keep, method=calib_method)
        rep = st.check_parity(model, kind, dst, gate_feeds, steps, precision)
        reports = [rep, st.check_parity(model, kind, dst, gate_feeds, steps, precision, reference=fp32_path)]
        try:
            st.gate_or_remove(rep, dst)
        except ParityError as e:
            if precision != "int8":
                raise
            raise ParityError(f"{e}; {INT8_REMEDY}") from None
        info = st.sidecar_info(model, header, kind, steps, precision, captions, reports, keep)
        info["text_encoder"] = parent.get("text_encoder")
        info["quantization"] = {"float_nodes": len(extra.get("excluded_nodes", extra.get("float32_nodes", []))),
                                "calibration_batches": extra.get("calibration_batches", 0),
                                "dequantize_nodes": extra.get("dequantize_nodes", 0)}
        write_sidecar(dst, info)
        rows.append({"precision": precision, "file": str(dst), "size_mb": round(size_mb(dst), 3), "parity": rep.to_json(),
                     "vs_fp32": reports[1].to_json()})
    return rows
