"""Export a torch module to ONNX (opset >= 18) and run it in onnxruntime.

We use torch's own exporter (`torch.onnx.export(..., dynamo=True)`, the torch.export-based path that
is the default since torch 2.9) rather than writing graphs by hand: it records, for every ONNX node,
the module path it came from (`pkg.torch.onnx.name_scopes`), which is what lets quantization keep the
action boundary (time embedding, action in/out projections, termination head) out of int8 by module
name instead of by fragile node-name patterns. `module_path_of` also understands the legacy
TorchScript exporter's "/a/b/Op" node names, so an ONNX made by either exporter can be quantized.

Model-agnostic on purpose: `wallwm_edge.export.student` wraps the policy into the modules exported
here, and the tests use a small stand-in module.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np

from wallwm_edge.errors import WallwmError

MIN_OPSET = 18


class ExportError(WallwmError):
    """torch could not export the module, or the ONNX it wrote is invalid."""


EXPORTERS = ("dynamo", "torchscript")


def export_module(module, args: tuple, path: str | os.PathLike, input_names: list[str], output_names: list[str],
                  batch_inputs: tuple[str, ...] = (), opset: int = MIN_OPSET, verbose: bool = False,
                  exporter: str = "dynamo") -> Path:
    """Export `module(*args)` to `path` and check the file. `batch_inputs` get a dynamic axis 0 ("batch").

    exporter "dynamo" (default): torch.export + onnxscript, the maintained path, module paths in node
    metadata. "torchscript": torch's legacy tracer, deprecated since torch 2.9 but still shipped in the
    pinned 2.13, and 10-20x faster on our unrolled graphs (2 s instead of 20-40 s for `tiny` on a
    loaded 2-core machine); module paths live in its node names ("/layers.0/video/qkv/MatMul").
    Both give the same numbers (the parity gates check every file either way).

    All weights are stored inside the one .onnx file (our students are far below protobuf's 2 GB), so
    the file can be copied to a robot on its own.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    import onnx
    import torch

    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} requested; the export needs opset >= {MIN_OPSET} (attention masks, LayerNormalization)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    sink = io.StringIO()
    try:
        quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(sink)
        with warnings.catch_warnings(), torch.no_grad(), quiet:
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                dynamic_shapes = None
                if batch_inputs:
                    batch = torch.export.Dim("batch", min=1, max=1024)
                    dynamic_shapes = tuple({0: batch} if name in batch_inputs else None for name in input_names)
                program = torch.onnx.export(module, args, input_names=input_names, output_names=output_names,
                                            opset_version=opset, dynamo=True, dynamic_shapes=dynamic_shapes,
                                            external_data=False, optimize=True, verbose=verbose)
                program.save(str(path), external_data=False)
            else:
                axes = {name: {0: "batch"} for name in batch_inputs}
                axes.update({name: {0: "batch"} for name in output_names} if batch_inputs else {})
                torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                                  opset_version=opset, dynamo=False, dynamic_axes=axes or None, verbose=verbose)
    except Exception as e:  # torch.export raises many types; say which module and why in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"exporting {type(module).__name__} to {path} failed: {type(e).__name__}: {first[:400]}") from e
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{path}: exported ONNX is invalid: {str(e).splitlines()[0]}") from None
    got = opset_of(model)
    if got < MIN_OPSET:
        raise ExportError(f"{path}: exporter wrote opset {got} < {MIN_OPSET}")
    return path


def opset_of(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def module_path_of(node) -> str:
    """Dotted module path ("blocks.3.attn.qkv") an ONNX node was exported from; "" if unknown.

    dynamo exporter: metadata `pkg.torch.onnx.name_scopes` = ['', 'blocks', 'blocks.3', ..., 'linear_7'],
    whose last entry is the aten op; legacy exporter: node name "/blocks.3/attn/qkv/MatMul".
    """
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value) if s]
            except (ValueError, SyntaxError):
                return ""
            # The entries are nested scopes; the deepest module scope is the last but one.
            return scopes[-2] if len(scopes) >= 2 else ""
    if node.name.startswith("/"):
        parts = [p for p in node.name.split("/") if p]
        return ".".join(parts[:-1])
    return ""


def nodes_under(model, prefixes: tuple[str, ...]) -> list[str]:
    """Names of the nodes exported from any module whose path equals or starts with one of `prefixes`.

    A prefix matches whole path components anywhere in the path: "action_out" matches "action_out",
    "action_out.0", "heads.action_out" and (legacy exporter, repeated calls) "action_out_1", not
    "action_outline".
    """
    out = []
    for node in model.graph.node:
        mp = module_path_of(node)
        if not mp or not node.name:
            continue
        comps = mp.split(".")
        # the legacy exporter names the 2nd, 3rd call of a module "action_out_1", "action_out_2"
        if any(c == p or re.fullmatch(re.escape(p) + r"_\d+", c) for p in prefixes for c in comps):
            out.append(node.name)
    return out


def session(path: str | os.PathLike, threads: int | None = None, providers=("CPUExecutionProvider",),
            error: type[WallwmError] | None = None, custom_ops: bool = True):
    """An onnxruntime session (CPU unless `providers` says otherwise); `threads` caps intra-op threads
    (None: onnxruntime's default). A file onnxruntime cannot load raises `error` (default ExportError) in one
    line. torch-free: the on-board runtime builds its sessions here too.

    custom_ops: register `_C`'s onnxruntime ops when it has them (export/attention_op.py), so a graph with
    `wallwm.BlockSparseAttention` nodes runs our kernel; False (or no `_C`, or WALLWM_ORT_OPS=0) runs those
    nodes' standard-op bodies. Graphs without such nodes are unaffected either way.
    """
    import onnxruntime as ort

    from wallwm_edge.export import attention_op

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    attention_op.register(opts, custom_ops)  # after the threads: the op reads them
    try:
        return ort.InferenceSession(str(path), opts, providers=list(providers))
    except Exception as e:  # onnxruntime raises its own exception types; one line is what the user needs
        raise (error or ExportError)(f"{path}: onnxruntime cannot load it: {str(e).splitlines()[0][:300]}") from None


def run(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a session on numpy feeds (cast to the input's declared dtype); returns name -> array."""
    inputs = {i.name: i for i in sess.get_inputs()}
    missing = sorted(set(inputs) - set(feeds))
    if missing:
        raise ExportError(f"missing ONNX input(s) {missing}; the model takes {sorted(inputs)}")
    cast = {}
    for name, meta in inputs.items():
        dtype = _ORT_TYPES.get(meta.type)
        arr = np.asarray(feeds[name])
        cast[name] = np.ascontiguousarray(arr.astype(dtype) if dtype is not None and arr.dtype != dtype else arr)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, cast)))


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(bool)": np.bool_,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
}
