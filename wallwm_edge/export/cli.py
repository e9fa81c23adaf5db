"""`wallwm-edge export`: checkpoint -> gated ONNX (+ float16 / int8 variants, + TensorRT where present)."""

from __future__ import annotations

import argparse
import json

from wallwm_edge.cli import comma_list

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


def register(sub) -> None:
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads for the eager reference (default 1)")
    p.set_defaults(func=run)
    from wallwm_edge.export import text_encoder

    text_encoder.register(sub)  # export-encoder: the on-board sentence encoder


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
                               exporter=args.exporter, calib_method=args.calib_method)
    for kind, rows in report["graphs"].items():
        for r in rows:
            par = r["parity"]
            print(f"{kind:6s} {r['precision']:5s} {r['size_mb']:7.2f} MB  cosine {par['cosine']:.5f}  L1 {par['l1']:.5f}  PASS  {r['file']}")
    if args.trt:
        from wallwm_edge.export.tensorrt import build_engine, load_profile

        prof = load_profile(args.trt)
        from pathlib import Path

        src = Path(args.out) / f"{args.name}.sample{'.int8' if prof.precision == 'int8' else ''}.onnx"
        engine = build_engine(src, src.with_suffix(f".{prof.name}.engine"), prof)
        print(json.dumps({"engine": str(engine), "profile": prof.name}))
    return 0
