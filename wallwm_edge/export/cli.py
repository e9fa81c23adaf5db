"""`wallwm-edge quantize` (float32 ONNX -> float16 / int8) and `wallwm-edge export` (checkpoint -> gated ONNX,
+ float16 / int8 variants, + TensorRT where present)."""

from __future__ import annotations

import argparse
import json

from wallwm_edge.cli import comma_list
from wallwm_edge.errors import ConfigError

EXAMPLES = """\
examples:
  wallwm-edge export checkpoints/student --out checkpoints/student --data data/mw
  wallwm-edge export runs/student --out out/onnx --data data/mw --precisions fp32,fp16,int8
  wallwm-edge export runs/student --out out/onnx --graphs sample --trt export/profiles/orin-int8.json   (on a Jetson)

writes OUT/NAME.sample.onnx (the whole S-step sampling, one call per chunk), OUT/NAME.step.onnx (one
denoise step), a NAME.*.json sidecar beside each (inputs, normalizer, views, captions, parity), and
OUT/NAME.export.json. Every file passes its parity gate against the eager model or the export fails and
writes nothing: files are staged in a hidden folder beside OUT and moved into OUT only when all passed.
"""

QUANT_EXAMPLES = """\
examples:
  wallwm-edge quantize checkpoints/student --onnx checkpoints/student/student.sample.onnx --data data/mw
  wallwm-edge quantize runs/student --onnx out/student.sample.onnx --data data/mw --precisions int8 --calib-samples 128

writes NAME.int8.onnx / NAME.fp16.onnx + sidecars beside the float32 ONNX (made by `wallwm-edge export`),
each gated against the eager model (int8: cosine >= 0.98; fp16: cosine >= 0.99, L1 <= 0.05), and prints
size and accuracy per variant. The action boundary (time embedding, action in/out and their norm,
termination head: wallwm_edge.model.boundary) stays float.
"""


def register(sub) -> None:
    q = sub.add_parser("quantize", help="float16 / int8 (QDQ) variants of an exported ONNX, parity-gated",
                       description="Post-training quantization with onnxruntime (QDQ, calibration on dataset batches).\n\n" + QUANT_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("checkpoint", help="the checkpoint the ONNX was exported from (eager reference for the gates)")
    q.add_argument("--onnx", required=True, help="the float32 ONNX written by `wallwm-edge export` (its sidecar beside it)")
    q.add_argument("--data", required=True, help="dataset for calibration and gate inputs")
    q.add_argument("--precisions", type=comma_list, default=("fp16", "int8"), help="fp16,int8 (default both)")
    q.add_argument("--calib-samples", type=int, default=64, help="calibration samples (default 64)")
    q.add_argument("--calib-method", default="percentile", choices=["percentile", "minmax"],
                   help="activation ranges from the calibration batches: percentile (default: the 99.999th, robust to "
                        "outliers) or minmax (the full range)")
    q.add_argument("--gate-samples", type=int, default=32, help="fresh samples per gate (default 32)")
    q.add_argument("--batch", type=int, default=4)
    q.add_argument("--keep", type=comma_list, default=None, help="module names kept float (default: the action boundary)")
    q.add_argument("--text-encoder", default=None, choices=["minilm", "hash"], help="default: the one in the ONNX sidecar")
    q.add_argument("--track", default="subtask")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=run_quantize)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (parity-gated), quantize, build TensorRT",
                       description="Export a wallwm-edge checkpoint to ONNX (opset 18), gate it against the eager model, "
                                   "optionally write float16/int8 variants and a TensorRT engine.\n\n" + EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="model.safetensors or the run folder holding it")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default="student", help="file name stem (default student)")
    p.add_argument("--data", default=None, help="dataset for gate inputs, int8 calibration and the caption table")
    p.add_argument("--graphs", type=comma_list, default=("sample", "step"), help="sample,step (default both)")
    p.add_argument("--steps", type=int, default=None, help="flow steps unrolled in the sample graph (default: the checkpoint's)")
    p.add_argument("--precisions", type=comma_list, default=("fp32",), help="any of fp32,fp16,int8 (default fp32; int8 needs --data)")
    p.add_argument("--gate-samples", type=int, default=32, help="fresh samples per parity gate (default 32)")
    p.add_argument("--calib-samples", type=int, default=64, help="dataset samples for int8 calibration (default 64)")
    p.add_argument("--calib-method", default="percentile", choices=["percentile", "minmax"],
                   help="int8 activation ranges: percentile (default: the 99.999th, robust to outliers) or minmax (the full range)")
    p.add_argument("--batch", type=int, default=4, help="rows per gate / calibration batch (default 4)")
    p.add_argument("--text-encoder", default="minilm", choices=["minilm", "hash"],
                   help="the encoder the checkpoint was trained with (caption table); default minilm")
    p.add_argument("--track", default="subtask", help="event track whose captions go in the table (default subtask)")
    p.add_argument("--trt", default=None, metavar="PROFILE", help="also build a TensorRT engine with this build profile JSON (export/profiles/)")
    p.add_argument("--exporter", default="dynamo", choices=["dynamo", "torchscript"],
                   help="dynamo: torch.export (default, maintained); torchscript: legacy tracer, 10-20x faster here")
    p.add_argument("--attention-op", action="store_true",
                   help="float32 graphs run attention as one wallwm.BlockSparseAttention node: the _C kernel where the op "
                        "loads, the standard ops otherwise (same file); gated both ways")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads for the eager reference (default 1)")
    p.set_defaults(func=run)
    register_encoder(sub)  # export-encoder: the on-board sentence encoder


def register_encoder(sub) -> None:
    from wallwm_edge.export.text_encoder import EXAMPLES as ENCODER_EXAMPLES

    p = sub.add_parser("export-encoder", help="export the sentence encoder (all-MiniLM-L6-v2) to ONNX for the on-board runtime",
                       description="Export the sentence encoder all-MiniLM-L6-v2 to ONNX (fp32 and int8, mean pooling and "
                                   "L2 normalisation inside), gated against sentence-transformers.\n\n" + ENCODER_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (the student's folder, so the runtime finds it)")
    p.add_argument("--precisions", type=comma_list, default=("fp32", "int8"), help="any of fp32,int8 (default both)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the reference (default 1)")
    p.set_defaults(func=run_encoder)


def run_encoder(args) -> int:
    import torch

    from wallwm_edge.export.text_encoder import export_text_encoder

    torch.set_num_threads(max(1, args.threads))
    rec = export_text_encoder(args.out, tuple(args.precisions))
    print(json.dumps({"out": str(args.out), "files": rec["files"],
                      "min_cosine": {p: round(r["min_cosine"], 6) for p, r in rec["parity"].items()}}))
    return 0


def source_for(checkpoint, data, text_encoder: str, track: str = "subtask"):
    """A SampleSource over `data` with the checkpoint's config (checks the data fits it)."""
    from wallwm_edge.data.dataset import Dataset
    from wallwm_edge.model.checkpoint import model_config, read_header
    from wallwm_edge.train.samples import SampleSource, default_embedder, hash_embedder

    header = read_header(checkpoint)
    cfg = model_config(header, checkpoint)
    split = (header.get("train_config") or {}).get("split")  # calibrate and gate on the checkpoint's training split
    embed = hash_embedder() if text_encoder == "hash" else default_embedder()
    return SampleSource(Dataset.open(data), cfg, embed, track, split, False), embed


def run(args) -> int:
    import torch

    from wallwm_edge.export.student import export_checkpoint
    from wallwm_edge.train.samples import default_embedder, hash_embedder

    torch.set_num_threads(args.threads)
    if args.trt and args.attention_op:  # TensorRT would need the op as a plugin (issue 13 item 2, not built yet)
        raise ConfigError("--attention-op and --trt: TensorRT has no plugin for wallwm.BlockSparseAttention yet; "
                          "export the TensorRT student without --attention-op")
    if args.trt:  # fail before the long export, not after it
        from wallwm_edge.export.tensorrt import TensorRTUnavailable, load_profile, why_unavailable

        load_profile(args.trt)
        reason = why_unavailable()
        if reason:
            raise TensorRTUnavailable(f"--trt: cannot build a TensorRT engine here: {reason}")
    source, embed = (None, None)
    if args.data:
        source, embed = source_for(args.checkpoint, args.data, args.text_encoder, args.track)
    else:
        embed = hash_embedder() if args.text_encoder == "hash" else default_embedder()
    report = export_checkpoint(args.checkpoint, args.out, name=args.name, graphs=args.graphs, steps=args.steps, source=source,
                               embed=embed, text_encoder=args.text_encoder, precisions=args.precisions,
                               gate_samples=args.gate_samples, batch=args.batch, calib_samples=args.calib_samples, seed=args.seed,
                               exporter=args.exporter, calib_method=args.calib_method, attention_op=args.attention_op)
    for kind, rows in report["graphs"].items():
        for r in rows:
            par = r["parity"]
            print(f"{kind:6s} {r['precision']:5s} {r['size_mb']:7.2f} MB  cosine {par['cosine']:.5f}  L1 {par['l1']:.5f}  PASS  {r['file']}")
            if "attention_op" in r:
                op = r["attention_op"]
                print(f"{kind:6s} attention op: {op['nodes']} wallwm.BlockSparseAttention node(s)" +
                      (f", max |diff| vs standard {max(p['max_abs'] for p in op['parity']):.2e}" if op["nodes"] else
                       ": no attention matched, the graph keeps its standard ops"))
    if args.trt:
        from wallwm_edge.export.tensorrt import build_engine, load_profile

        prof = load_profile(args.trt)
        from pathlib import Path

        src = Path(args.out) / f"{args.name}.sample{'.int8' if prof.precision == 'int8' else ''}.onnx"
        engine = build_engine(src, src.with_suffix(f".{prof.name}.engine"), prof)
        print(json.dumps({"engine": str(engine), "profile": prof.name}))
    return 0


def check_onnx_file(path) -> None:
    """DataError in one line if `path` is not a loadable ONNX model (truncated, corrupt protobuf)."""
    import onnx

    from wallwm_edge.errors import DataError
    from wallwm_edge.validate import clip

    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends: the user needs the file and one line
        raise DataError(f"{path}: not a readable ONNX model ({type(e).__name__}: {clip(str(e).splitlines()[0] if str(e) else '', 200)})") from None


def run_quantize(args) -> int:
    import torch
    from tqdm import tqdm

    from wallwm_edge.export import student as st
    from wallwm_edge.export.quantize import quantize_variants, size_mb
    from wallwm_edge.export.sidecar import read_sidecar

    torch.set_num_threads(1)
    parent = read_sidecar(args.onnx)
    check_onnx_file(parent["onnx_path"])
    encoder = args.text_encoder or parent.get("text_encoder") or "minilm"
    model, header = st.load_for_export(args.checkpoint)
    source, _ = source_for(args.checkpoint, args.data, encoder, args.track)  # the checkpoint's training split
    kind = parent["kind"]
    calib = st.dataset_feeds(model.cfg, source, args.calib_samples, args.batch, args.seed + 200, kind)
    gate = st.gate_feeds_for(model.cfg, kind, source, args.gate_samples, args.batch, args.seed + 100)
    rows = []
    for precision in tqdm(args.precisions, desc="quantize", unit="variant"):
        rows += quantize_variants(model, header, args.onnx, (precision,), calib, gate, keep=args.keep, calib_method=args.calib_method)
    print(f"{'variant':8s} {'size MB':>8s} {'cosine':>8s} {'L1':>8s}  vs-fp32 cosine")
    print(f"{'fp32':8s} {size_mb(args.onnx):8.2f} {'(parent)':>8s}")
    for r in rows:
        p, v = r["parity"], r["vs_fp32"]
        print(f"{r['precision']:8s} {r['size_mb']:8.2f} {p['cosine']:8.5f} {p['l1']:8.5f}  {v['cosine']:.5f}   {r['file']}")
    return 0
