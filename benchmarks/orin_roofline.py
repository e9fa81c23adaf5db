"""Orin on paper: the student's FLOPs and bytes per chunk from its ONNX graph, and roofline latency bounds
on Jetson AGX Orin 64GB and Jetson AGX Thor from NVIDIA's published peaks.

    python benchmarks/orin_roofline.py            (or: wallwm-edge bench orin_roofline [--quick])

Nothing is timed: this is arithmetic on the shipped graphs `checkpoints/student/student.sample.onnx` (fp32)
and `student.sample.int8.onnx` (QDQ int8). One run of the sample graph at batch 1 is one action chunk
(the flow sampling is unrolled inside it). Shapes come from `onnx.shape_inference.infer_shapes` (with
data propagation) after the dynamic batch dim is set to 1.

Counting rules (per node, at the inferred shapes):
- MatMul (batched too): 2*prod(output shape)*K = 2*M*N*K per matrix; Gemm: 2*M*N*K (its bias, when
  given, adds M*N to the elementwise count).
- Elementwise (Add, Sub, Mul, Div, Pow, Sqrt, Where, Not, Or, IsNaN, Cast, ...): 1 per output element;
  transcendental (Erf, Sigmoid, Tanh, Exp, Log, Cos, Sin): 4 per output element; Softmax: 5 per element
  (max, subtract, exp, sum, divide); LayerNormalization: 8 per element (mean, subtract, square, mean,
  rsqrt, multiply, scale, shift); Reduce*: 1 per input element. Shape plumbing (Reshape, Transpose,
  Gather, Slice, Concat, Shape, ...) costs 0 FLOPs. This rough count is small beside the matmuls.
- Bytes: every initializer (weights) once at its stored dtype, plus per node the non-initializer inputs
  read and the outputs written at their dtypes. Pure views (Reshape, Unsqueeze, Squeeze, Flatten,
  Shape, Identity) move nothing. In the int8 graph the Quantize/DequantizeLinear nodes are taken as
  fused into their consumers (as TensorRT does): they move nothing themselves, a weight read through a
  DequantizeLinear is its int8 initializer (counted once), and an activation read through Q->DQ is read
  at int8. No fusion of anything else is assumed, so the bytes are an upper estimate of DRAM traffic
  (a fused engine keeps many of these small activations in L2; Orin's is 4 MB, Thor's 32 MB).
- Bound = max(FLOPs / peak, bytes / bandwidth) with DENSE peaks (no 2:4 structured sparsity): a
  lower bound on latency that ignores kernel launch cost (~5-20 us per kernel), which dominates for a
  graph this small; the launch-count line in the JSON shows it.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from wallwm_edge.bench import write_result

REPO = Path(__file__).resolve().parent.parent
STUDENT = REPO / "checkpoints" / "student"

ORIN_URL = "https://www.nvidia.com/en-us/autonomous-machines/embedded-systems/jetson-orin/"
ORIN_BRIEF_URL = ("https://www.nvidia.com/content/dam/en-zz/Solutions/gtcf21/jetson-orin/"
                  "nvidia-jetson-agx-orin-technical-brief.pdf")
ORIN_DATASHEET_URL = "https://developer.nvidia.com/embedded/downloads#?search=Jetson%20AGX%20Orin%20Series%20Data%20Sheet"
THOR_URL = "https://www.nvidia.com/en-us/autonomous-machines/embedded-systems/jetson-thor/"
THOR_DATASHEET_URL = "https://developer.nvidia.com/embedded/downloads#?search=Jetson%20AGX%20Thor%20Series%20Data%20Sheet"

# Published peaks, GPU only (the DLAs are left out: the student's attention/LayerNorm would not run there).
# "published" = the number NVIDIA prints; "dense" = what the roofline uses; "derived" says how.
SOURCES_NOTE = ("URLs are NVIDIA's public product pages, technical brief and data-sheet downloads; they were written "
                "from those documents' published figures, not fetched by this script (it runs offline). Every peak "
                "used is DENSE (no 2:4 structured sparsity); NVIDIA's headline TOPS/TFLOPS are SPARSE (2x).")
PLATFORMS = {
    "jetson_agx_orin_64gb": {
        "memory": "256-bit LPDDR5, 64 GB, shared by CPU and GPU",
        "bandwidth_GBps": 204.8,
        "bandwidth_source": [ORIN_URL, ORIN_DATASHEET_URL],
        "gpu": "Ampere, 2048 CUDA cores, 64 third-generation Tensor Cores (16 SMs), up to 1.3 GHz",
        "peaks": {
            "fp32": {"dense_TFLOPS": 5.3, "published": "5.3 FP32 TFLOPS (CUDA cores, dense)",
                     "sparse": False, "source": [ORIN_BRIEF_URL, ORIN_DATASHEET_URL]},
            "fp16": {"dense_TFLOPS": 42.5,
                     "published": "not a headline figure; derived from the GPU's 170 sparse INT8 TOPS",
                     "derived": "170 sparse INT8 / 2 (2:4 structured sparsity doubles the printed figure) / 2 "
                                "(FP16 tensor rate = INT8 tensor rate / 2 on Ampere) = 42.5 dense",
                     "sparse": False, "source": [ORIN_BRIEF_URL, ORIN_DATASHEET_URL]},
            "int8": {"dense_TOPS": 85.0,
                     "published": "170 INT8 TOPS Tensor Core SPARSE (GPU; the module's 275 TOPS adds the 2 DLAs' "
                                  "105 sparse); dense = 85",
                     "derived": "dense = sparse / 2",
                     "sparse": False, "source": [ORIN_URL, ORIN_BRIEF_URL, ORIN_DATASHEET_URL]},
        },
    },
    "jetson_agx_thor_t5000": {
        "memory": "256-bit LPDDR5X, 128 GB, shared by CPU and GPU",
        "bandwidth_GBps": 273.0,
        "bandwidth_source": [THOR_URL, THOR_DATASHEET_URL],
        "gpu": "Blackwell, 2560 CUDA cores, 96 fifth-generation Tensor Cores, up to 1.57 GHz",
        "peaks": {
            "fp32": {"dense_TFLOPS": 8.04, "published": "not printed as a headline figure",
                     "derived": "2560 CUDA cores x 2 FLOP (FMA) x 1.57 GHz",
                     "sparse": False, "source": [THOR_URL, THOR_DATASHEET_URL]},
            "fp16": {"dense_TFLOPS": 258.75,
                     "published": "2070 FP4 TFLOPS SPARSE (the headline figure)",
                     "derived": "2070 sparse FP4 / 2 (sparsity) / 2 (FP4->FP8) / 2 (FP8->FP16): Blackwell's "
                                "tensor-core rate halves per doubling of operand width",
                     "sparse": False, "source": [THOR_URL, THOR_DATASHEET_URL]},
            "int8": {"dense_TOPS": 517.5,
                     "published": "1035 FP8 TFLOPS SPARSE (2070 sparse FP4 / 2)",
                     "derived": "dense FP8 = 2070 / 2 / 2; INT8 taken at the FP8 rate",
                     "sparse": False, "source": [THOR_URL, THOR_DATASHEET_URL]},
        },
    },
}

# Published measured latencies, for context only (other, much larger models).
CONTEXT = {
    "pi_cpp_fastwam_int8_agx_orin_ms": {
        "ms": 161.9, "what": "pi.cpp: FastWAM, INT8, measured on Jetson AGX Orin (one action chunk)",
        "source": "issue 13 of this project (pi.cpp's published figure; its page was not re-fetched here)",
    },
    "gr00t_n1_6_ms": {
        "ms": 173.0, "what": "NVIDIA GR00T N1.6 published inference latency (one action chunk)",
        "source": "issue 13 of this project (GR00T N1.6's published figure; NVIDIA's deployment notes: "
                  "https://github.com/NVIDIA/Isaac-GR00T, not re-fetched here)",
    },
    "note": "Both are other, much larger models (billions of parameters, a vision-language backbone) measured on "
            "hardware; our figures are paper bounds for a 1.1 M-parameter student. They are not a like-for-like "
            "comparison: they say what a real VLA costs on this class of board, ours says how far below that "
            "the student's own arithmetic sits.",
}

VIEW_OPS = {"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Shape", "Identity", "Constant", "Size"}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
TRANSCENDENTAL = {"Erf", "Sigmoid", "Tanh", "Exp", "Log", "Cos", "Sin", "Softplus", "Gelu"}
ZERO_FLOP = VIEW_OPS | QDQ_OPS | {"Transpose", "Gather", "Slice", "Concat", "Split", "Expand", "Tile", "Range",
                                  "ScatterND", "ConstantOfShape", "Pad", "GatherND", "GatherElements"}


def _dims(vi) -> list | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        if not d.HasField("dim_value"):
            return None
        out.append(int(d.dim_value))
    return out


def infer(model: onnx.ModelProto, batch: int = 1) -> tuple[onnx.ModelProto, dict]:
    """Set every symbolic input dim to `batch`, run onnx shape inference; returns (model, {name: (shape, dtype)})."""
    m = copy.deepcopy(model)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") or not d.HasField("dim_value"):
                d.dim_value = batch
    m = shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    info = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        info[vi.name] = (_dims(vi), vi.type.tensor_type.elem_type)
    for init in m.graph.initializer:
        info[init.name] = (list(init.dims), init.data_type)
    for node in m.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    info[node.output[0]] = (list(a.t.dims), a.t.data_type)
    missing = [o for n in m.graph.node for o in n.output if o and (o not in info or info[o][0] is None)]
    if missing:
        info.update(_shapes_by_running(m, missing, batch))
    return m, info


def _shapes_by_running(m: onnx.ModelProto, names: list[str], batch: int) -> dict:
    """Data-dependent shapes (Range, a Slice of it) that inference leaves open: run the graph once on zeros
    with those tensors as extra outputs (onnxruntime, CPU). Returns {} when onnxruntime is not there."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    g = copy.deepcopy(m)
    have = {o.name for o in g.graph.output}
    for n in names:
        if n not in have:
            g.graph.output.append(helper.make_empty_tensor_value_info(n))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(g.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for vi in g.graph.input:
        shape = [d.dim_value or batch for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
    outs = sess.run(names, feeds)
    return {n: (list(v.shape), helper.np_dtype_to_tensor_dtype(v.dtype)) for n, v in zip(names, outs)}


def _itemsize(dtype: int, float_bytes: int = 4) -> int:
    if dtype == onnx.TensorProto.FLOAT:
        return float_bytes
    return int(np.dtype(helper.tensor_dtype_to_np_dtype(dtype)).itemsize)


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape is not None else 0


def matmul_flops(node, info) -> int:
    """2*M*N*K per matrix product (batched MatMul: times the batch), from the inferred shapes."""
    a = info.get(node.input[0], (None, 0))[0]
    out = info.get(node.output[0], (None, 0))[0]
    if a is None or out is None:
        raise ValueError(f"{node.op_type} {node.name}: shape unknown after inference")
    if node.op_type == "Gemm":
        trans_a = next((a_.i for a_ in node.attribute if a_.name == "transA"), 0)
        k = a[0] if trans_a else a[1]
    else:
        k = a[-1]
    return 2 * _numel(out) * int(k)


def count(model: onnx.ModelProto, batch: int = 1, float_bytes: int = 4, inferred: tuple | None = None) -> dict:
    """FLOPs (matmul / other, and which of them run in int8) and bytes of one run of `model` at `batch`;
    float_bytes=2 counts every float32 tensor (weights too) as fp16, as a TensorRT fp16 engine stores it.
    `inferred`: infer(model, batch)'s result when already at hand."""
    m, info = inferred if inferred is not None else infer(model, batch)
    inits = {i.name for i in m.graph.initializer} | {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in m.graph.node for o in n.output}

    def source(name):
        """Follow Q/DQ back: (tensor actually read, its dtype, is_weight)."""
        n = producer.get(name)
        if n is not None and n.op_type == "DequantizeLinear":
            src = n.input[0]
            if src in inits:
                return src, info[src][1], True
            q = producer.get(src)
            if q is not None and q.op_type == "QuantizeLinear":
                return src, info.get(src, (None, onnx.TensorProto.INT8))[1], False
            return src, info.get(src, (None, onnx.TensorProto.INT8))[1], False
        if name in inits:
            return name, info[name][1], True
        return name, info.get(name, (None, onnx.TensorProto.FLOAT))[1], False

    mm_flops = mm_int8_flops = other_flops = 0
    act_bytes = 0
    used_weights: set[str] = set()
    unknown: list[str] = []
    kernels = 0
    per_op: dict[str, dict] = {}
    for node in m.graph.node:
        op = node.op_type
        if op in QDQ_OPS or op == "Constant":
            continue
        outs = [info.get(o, (None, 0)) for o in node.output if o]
        if any(s is None for s, _ in outs):
            unknown.append(f"{op}:{node.name}")
        f = 0
        if op in ("MatMul", "Gemm"):
            f = matmul_flops(node, info)
            mm_flops += f
            int8 = all(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in node.input[:2])
            if int8:
                mm_int8_flops += f
            if op == "Gemm" and len(node.input) > 2 and node.input[2]:
                other_flops += _numel(outs[0][0])
        elif op in ZERO_FLOP:
            pass
        elif op == "Softmax":
            f = 5 * _numel(outs[0][0])
        elif op == "LayerNormalization":
            f = 8 * _numel(outs[0][0])
        elif op.startswith("Reduce"):
            f = _numel(info.get(node.input[0], (None, 0))[0])
        elif op in TRANSCENDENTAL:
            f = 4 * _numel(outs[0][0])
        else:
            f = sum(_numel(s) for s, _ in outs)
        if op not in ("MatMul", "Gemm"):
            other_flops += f
        b = 0
        if op not in VIEW_OPS:
            kernels += 1
            for i in node.input:
                if not i:
                    continue
                src, dt, is_w = source(i)
                if is_w:
                    used_weights.add(src)
                    continue
                shape = info.get(src, (None, 0))[0]
                if shape is None:
                    unknown.append(f"input {src}")
                    continue
                b += _numel(shape) * _itemsize(dt, float_bytes)
            for s, dt in outs:
                b += _numel(s) * _itemsize(dt, float_bytes) if s is not None else 0
        act_bytes += b
        rec = per_op.setdefault(op, {"nodes": 0, "flops": 0, "activation_bytes": 0})
        rec["nodes"] += 1
        rec["flops"] += f
        rec["activation_bytes"] += b
    weight_bytes = sum(_numel(info[w][0]) * _itemsize(info[w][1], float_bytes) for w in used_weights)
    params = sum(_numel(info[w][0]) for w in used_weights if info[w][1] in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT8,
                                                                            onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT16))
    return {
        "flops": mm_flops + other_flops,
        "matmul_flops": mm_flops,
        "matmul_flops_int8": mm_int8_flops,
        "other_flops": other_flops,
        "weight_bytes": weight_bytes,
        "activation_bytes": act_bytes,
        "bytes": weight_bytes + act_bytes,
        "weight_elements": params,
        "kernels_unfused": kernels,
        "unknown_shapes": unknown,
        "per_op": dict(sorted(per_op.items(), key=lambda kv: -kv[1]["flops"])),
    }


def bound(flops_by_peak: list[tuple[int, float]], nbytes: int, bw_GBps: float) -> dict:
    """flops_by_peak: [(flops, peak_Tops)]; compute time is the sum of each share at its own peak."""
    t_c = sum(f / (p * 1e12) for f, p in flops_by_peak)
    t_m = nbytes / (bw_GBps * 1e9)
    return {"compute_us": round(t_c * 1e6, 3), "memory_us": round(t_m * 1e6, 3),
            "bound_us": round(max(t_c, t_m) * 1e6, 3), "limited_by": "memory" if t_m >= t_c else "compute"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="student FLOPs/bytes per chunk and Jetson Orin/Thor roofline bounds")
    ap.add_argument("--quick", action="store_true", help="same figures (nothing is timed)")
    ap.add_argument("--onnx", default=str(STUDENT / "student.sample.onnx"))
    ap.add_argument("--onnx-int8", default=str(STUDENT / "student.sample.int8.onnx"))
    args = ap.parse_args(argv)

    fp32_model = onnx.load(args.onnx)
    int8_model = onnx.load(args.onnx_int8)
    inf32, inf8 = infer(fp32_model), infer(int8_model)
    c32 = count(fp32_model, inferred=inf32)
    c8 = count(int8_model, inferred=inf8)
    c16 = count(fp32_model, float_bytes=2, inferred=inf32)
    c8h = count(int8_model, float_bytes=2, inferred=inf8)
    b16 = c16["bytes"]

    figures: dict = {
        "graphs": {"fp32": Path(args.onnx).name, "int8": Path(args.onnx_int8).name,
                   "per": "one chunk = one run of the sample graph at batch 1 (flow sampling unrolled inside)"},
        "counting_rules": __doc__.split("Counting rules", 1)[1].split("\n\"\"\"")[0].strip() if __doc__ else "",
        "student_fp32": c32,
        "student_fp16": {k: c16[k] for k in ("weight_bytes", "activation_bytes", "bytes")},
        "student_int8": c8,
        "student_int8_fp16_rest": {k: c8h[k] for k in ("weight_bytes", "activation_bytes", "bytes")},
        "platforms": PLATFORMS,
        "sources_note": SOURCES_NOTE,
        "bounds_us": {},
        "context_published_measured": CONTEXT,
    }
    for key, p in PLATFORMS.items():
        pk, bw = p["peaks"], p["bandwidth_GBps"]
        other8 = c8["flops"] - c8["matmul_flops_int8"]
        figures["bounds_us"][key] = {
            "fp32 (CUDA cores, fp32 tensors)": bound([(c32["flops"], pk["fp32"]["dense_TFLOPS"])], c32["bytes"], bw),
            "fp16 (Tensor Cores, fp16 tensors)": bound([(c32["flops"], pk["fp16"]["dense_TFLOPS"])], b16, bw),
            "int8 (int8 matmuls on Tensor Cores, the rest at fp16 peak; int8 graph's bytes as stored)":
                bound([(c8["matmul_flops_int8"], pk["int8"]["dense_TOPS"]), (other8, pk["fp16"]["dense_TFLOPS"])],
                      c8["bytes"], bw),
            "int8 + fp16 (as above, float tensors stored fp16: a TensorRT int8 engine with fp16 enabled)":
                bound([(c8["matmul_flops_int8"], pk["int8"]["dense_TOPS"]), (other8, pk["fp16"]["dense_TFLOPS"])],
                      c8h["bytes"], bw),
        }
        figures["bounds_us"][key]["launch_floor_us"] = {
            "kernels_unfused": c32["kernels_unfused"],
            "at_5us_each": 5 * c32["kernels_unfused"],
            "note": "not a roofline term: an unfused engine pays ~5-20 us per kernel launch, far above the roofline "
                    "here; TensorRT fusion and a CUDA graph cut both the count and the cost",
        }
    orin16 = figures["bounds_us"]["jetson_agx_orin_64gb"]["fp16 (Tensor Cores, fp16 tensors)"]["bound_us"]
    figures["ratio_pi_cpp_over_student_orin_fp16_bound"] = round(161.9e3 / orin16, 1)
    print(f"fp32: {c32['flops'] / 1e6:.2f} MFLOP ({c32['matmul_flops'] / 1e6:.2f} in matmuls), "
          f"{c32['bytes'] / 1e6:.2f} MB ({c32['weight_bytes'] / 1e6:.2f} weights); "
          f"int8: {c8['bytes'] / 1e6:.2f} MB (float rest at fp16: {c8h['bytes'] / 1e6:.2f} MB); fp16: {b16 / 1e6:.2f} MB")
    for key, b in figures["bounds_us"].items():
        print(key, {k: v["bound_us"] for k, v in b.items() if "bound_us" in v})
    unknown = c32["unknown_shapes"] + c8["unknown_shapes"]
    figures["shapes"] = ("onnx.shape_inference.infer_shapes(data_prop=True) at batch 1; the few data-dependent ones "
                         "(Range and what slices it) from one onnxruntime CPU run on zeros")
    goals = {"every_shape_inferred": True}
    met = {"every_shape_inferred": not unknown}
    write_result("orin_roofline", figures, goals, met)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
