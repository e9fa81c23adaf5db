"""Export a checkpoint (normally the distilled student) to ONNX, gate it against eager, quantize it.

Two graphs per checkpoint, both with a dynamic batch axis and the sight-cone view mask as an input:

    NAME.sample.onnx   the whole S-step Euler sampling unrolled: one engine call per action chunk
        images (B, V, H, W, 3) uint8, proprio (B, P) f32 raw, instruction (B, 384) f32,
        view_mask (B, Vn, Vn) bool, noise_video (B, F*Vn, latent) f32, noise_action (B, L, A) f32
        -> actions (B, L, A) f32 raw robot units, end_prob (B, L) f32
    NAME.step.onnx     one velocity evaluation (prepare + denoise_step), for runtimes that loop themselves
        images, proprio, instruction, view_mask as above, x_video (B, F*Vn, latent), x_action (B, L, A)
        normalised, t (B,) f32 in [0, 1) -> v_video, v_action (normalised), end_logit (B, L)

Noise is an input so the runtime owns its random numbers and the parity gates compare the same
sample; a static rig passes the same view mask every call (TensorRT folds a constant input cheaply).

Every ONNX written here passes a parity gate against the eager model on fresh inputs (never the
calibration inputs) before its sidecar is written; a miss raises ParityError and the files are removed,
so a bad engine never sits on disk looking valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wallwm_edge.data.staging import publish, staging_dir
from wallwm_edge.errors import ConfigError
from wallwm_edge.export import onnx_export, parity
from wallwm_edge.export.sidecar import write_sidecar
from wallwm_edge.model.boundary import ACTION_BOUNDARY
from wallwm_edge.model.denoiser import WallWM


class SampleGraph(nn.Module):
    INPUTS = ("images", "proprio", "instruction", "view_mask", "noise_video", "noise_action")
    OUTPUTS = ("actions", "end_prob")

    def __init__(self, model: WallWM, steps: int):
        super().__init__()
        self.model, self.steps = model, int(steps)

    def forward(self, images, proprio, instruction, view_mask, noise_video, noise_action):
        mask = self.model.full_mask(view_mask)  # (B, S, S)
        actions, end_prob, _ = self.model.sample(images, proprio, instruction, mask, noise_video, noise_action, self.steps)
        return actions, end_prob


class StepGraph(nn.Module):
    INPUTS = ("images", "proprio", "instruction", "view_mask", "x_video", "x_action", "t")
    OUTPUTS = ("v_video", "v_action", "end_logit")

    def __init__(self, model: WallWM):
        super().__init__()
        self.model = model

    def forward(self, images, proprio, instruction, view_mask, x_video, x_action, t):
        obs_h, cond_h, c = self.model.prepare(images, proprio, instruction)
        return self.model.denoise_step(obs_h, cond_h, c, x_video, x_action, t, self.model.full_mask(view_mask))


GRAPHS = {"sample": SampleGraph, "step": StepGraph}


def io_specs(cfg, kind: str) -> tuple[list[dict], list[dict]]:
    """Sidecar descriptions of a graph's inputs and outputs ("batch" marks the dynamic axis)."""
    V, (H, W), Vn, L, A = cfg.num_views, cfg.image_size, cfg.view_tokens, cfg.horizon, cfg.action_dim
    FV = cfg.n_future * Vn
    common = [
        {"name": "images", "shape": ["batch", V, H, W, 3], "dtype": "uint8", "doc": "RGB of every view, views in 'views' order"},
        {"name": "proprio", "shape": ["batch", cfg.proprio_dim], "dtype": "float32", "doc": "raw proprio state (normalised inside)"},
        {"name": "instruction", "shape": ["batch", cfg.instruction_dim], "dtype": "float32", "doc": "next-event caption embedding (see 'captions')"},
        {"name": "view_mask", "shape": ["batch", Vn, Vn], "dtype": "bool", "doc": "sight-cone mask between view tokens (True = may attend)"},
    ]
    if kind == "sample":
        ins = common + [
            {"name": "noise_video", "shape": ["batch", FV, cfg.latent_dim], "dtype": "float32", "doc": "standard normal noise"},
            {"name": "noise_action", "shape": ["batch", L, A], "dtype": "float32", "doc": "standard normal noise"},
        ]
        outs = [
            {"name": "actions", "shape": ["batch", L, A], "dtype": "float32", "doc": "raw end-effector actions, whole horizon"},
            {"name": "end_prob", "shape": ["batch", L], "dtype": "float32", "doc": "p(event ended by step l): execute up to the first > 0.5"},
        ]
    else:
        ins = common + [
            {"name": "x_video", "shape": ["batch", FV, cfg.latent_dim], "dtype": "float32", "doc": "current video latent state"},
            {"name": "x_action", "shape": ["batch", L, A], "dtype": "float32", "doc": "current normalised action state"},
            {"name": "t", "shape": ["batch"], "dtype": "float32", "doc": "flow time in [0, 1): Euler x += v / steps"},
        ]
        outs = [
            {"name": "v_video", "shape": ["batch", FV, cfg.latent_dim], "dtype": "float32", "doc": "video latent velocity"},
            {"name": "v_action", "shape": ["batch", L, A], "dtype": "float32", "doc": "normalised action velocity"},
            {"name": "end_logit", "shape": ["batch", L], "dtype": "float32", "doc": "termination logit"},
        ]
    return ins, outs


def random_feeds(cfg, batch: int, seed: int, kind: str) -> dict[str, np.ndarray]:
    """Fresh synthetic inputs. The view mask has fully masked rows (a token seeing nothing) and one
    sample whose whole mask is False, so the NaN-free handling of empty rows is exercised every time."""
    rng = np.random.default_rng(seed)
    V, (H, W), Vn = cfg.num_views, cfg.image_size, cfg.view_tokens
    mask = rng.random((batch, Vn, Vn)) < 0.4
    mask |= np.eye(Vn, dtype=bool)[None]
    mask[:, : max(1, Vn // 8)] = False  # tokens with no allowed view key
    mask[0] = False  # a sample whose view tokens see nothing at all
    feeds = {
        "images": rng.integers(0, 256, (batch, V, H, W, 3), dtype=np.uint8),
        "proprio": rng.normal(0, 1, (batch, cfg.proprio_dim)).astype(np.float32),
        "instruction": _unit(rng.normal(0, 1, (batch, cfg.instruction_dim))).astype(np.float32),
        "view_mask": mask,
    }
    return feeds | noise_feeds(cfg, batch, rng, kind)


def noise_feeds(cfg, batch: int, rng: np.random.Generator, kind: str) -> dict[str, np.ndarray]:
    FV = cfg.n_future * cfg.view_tokens
    nv = rng.standard_normal((batch, FV, cfg.latent_dim)).astype(np.float32)
    na = rng.standard_normal((batch, cfg.horizon, cfg.action_dim)).astype(np.float32)
    if kind == "sample":
        return {"noise_video": nv, "noise_action": na}
    return {"x_video": nv, "x_action": na, "t": rng.uniform(0, 1, batch).astype(np.float32)}


def dataset_feeds(cfg, source, n: int, batch: int, seed: int, kind: str) -> list[dict[str, np.ndarray]]:
    """Inputs from dataset samples (train.samples.SampleSource), `batch` rows per feed, fresh noise."""
    rng = np.random.default_rng(seed)
    out = []
    for lo in range(0, n, batch):
        b = min(batch, n - lo)
        s = source.materialize(source.plan(rng, b))
        f = {k: s[k] for k in ("images", "proprio", "instruction", "view_mask")}
        out.append(f | noise_feeds(cfg, b, rng, kind))
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


@torch.no_grad()
def eager(model: WallWM, kind: str, feeds: dict[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
    graph = SampleGraph(model, steps) if kind == "sample" else StepGraph(model)
    args = [torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in graph.INPUTS]
    outs = graph.eval()(*args)
    return {k: v.numpy() for k, v in zip(graph.OUTPUTS, outs)}


def gated_actions(model: WallWM, kind: str, outs: dict[str, np.ndarray]) -> np.ndarray:
    """What the gate compares: actions in the model's normalised space (O(1) on every robot)."""
    if kind == "sample":
        mean, std = model.action_norm.mean.numpy(), model.action_norm.std.numpy()
        return (outs["actions"] - mean) / std
    return outs["v_action"]


def check_parity(model: WallWM, kind: str, onnx_path: str | os.PathLike, feeds: list[dict[str, np.ndarray]], steps: int,
                 precision: str, reference=None, name: str | None = None) -> parity.ParityReport:
    """Gate `onnx_path` against `reference` (default: the eager model) on `feeds`; returns the report.

    `reference` may be another ONNX path (quantized variants are gated against their float32 parent
    too). Also fails on any NaN/inf in the candidate's outputs, end probabilities included.
    """
    sess = onnx_export.session(onnx_path)
    ref_sess = onnx_export.session(reference) if reference is not None else None
    refs, gots, bad = [], [], 0
    for f in feeds:
        got = onnx_export.run(sess, f)
        ref = onnx_export.run(ref_sess, f) if ref_sess is not None else eager(model, kind, f, steps)
        bad += sum(int((~np.isfinite(v)).sum()) for v in got.values())
        refs.append(gated_actions(model, kind, ref))
        gots.append(gated_actions(model, kind, got))
    rep = parity.compare(name or f"{Path(onnx_path).name} vs {'eager' if reference is None else Path(reference).name}",
                         np.concatenate(refs), np.concatenate(gots), precision)
    if bad and rep.passed:  # NaN only in a non-action output (end_prob, video): still a failure
        rep = parity.ParityReport(**{**rep.to_json(), "passed": False, "why": f"{bad} NaN/inf values in the outputs", "nonfinite": bad})
    return rep


def export_graph(model: WallWM, kind: str, path: Path, steps: int, example_batch: int = 2, exporter: str = "dynamo") -> Path:
    graph = SampleGraph(model, steps) if kind == "sample" else StepGraph(model)
    ex = random_feeds(model.cfg, example_batch, seed=12345, kind=kind)
    args = tuple(torch.from_numpy(np.ascontiguousarray(ex[k])) for k in graph.INPUTS)
    return onnx_export.export_module(graph.eval(), args, path, list(graph.INPUTS), list(graph.OUTPUTS), batch_inputs=graph.INPUTS,
                                     exporter=exporter)


def sidecar_info(model: WallWM, header: dict, kind: str, steps: int, precision: str, captions: dict[str, np.ndarray],
                 reports: list[parity.ParityReport], keep: tuple[str, ...] = ACTION_BOUNDARY) -> dict:
    cfg = model.cfg
    ins, outs = io_specs(cfg, kind)
    return {
        "kind": kind, "precision": precision, "inputs": ins, "outputs": outs,
        "preset": cfg.name, "config": cfg.to_json(), "steps": int(steps), "views": list(cfg.views),
        "image_size": list(cfg.image_size), "patch": cfg.patch, "L_max": cfg.horizon, "action_dim": cfg.action_dim,
        "proprio_dim": cfg.proprio_dim, "text_dim": cfg.instruction_dim, "mode": cfg.mode,
        "view_tokens": cfg.view_tokens, "latent_dim": cfg.latent_dim, "n_future": cfg.n_future,
        "normalizer": {"action": model.action_norm.stats(), "proprio": model.proprio_norm.stats()},
        "rig": header.get("rig"),
        "float_modules": list(keep) if precision != "fp32" else [],
        "checkpoint": {"step": header.get("step"), "dataset": header.get("dataset"), "distill": _distill_summary(header)},
        "captions": {c: np.round(np.asarray(e, np.float64), 5).tolist() for c, e in captions.items()},  # 1e-5: far below any effect
        "parity": [r.to_json() for r in reports],
    }


def _distill_summary(header: dict) -> dict | None:
    d = header.get("distill")
    if not d:
        return None
    return {"method": d.get("method"), "teacher": d.get("teacher")}


def gate_or_remove(report: parity.ParityReport, *paths: Path) -> parity.ParityReport:
    """Enforce the gate; on a miss delete the files first, so no ungated engine is left behind."""
    if not report.passed:
        for p in paths:
            Path(p).unlink(missing_ok=True)
    return parity.enforce(report)


def load_for_export(path: str | os.PathLike) -> tuple[WallWM, dict]:
    from wallwm_edge.model.checkpoint import load_model

    model, header = load_model(path)
    return model.eval(), header


def caption_table(source=None, embed=None, cfg=None) -> dict[str, np.ndarray]:
    """text -> embedding of every known event text: the dataset's canonical captions (when a
    SampleSource is given) and every text of the event vocabulary (registry tasks and subtasks,
    actions, segments: caption, training paraphrases and the held-out paraphrases), embedded with the
    training encoder. The on-board runtime carries no sentence encoder, so whatever the planner may
    say must be here (~200 texts, ~0.6 MB of JSON)."""
    table: dict[str, np.ndarray] = {}
    if source is not None:
        table.update({c: source.embedding[c] for c in sorted({it.texts[0] for it in source.items})})
    if embed is None:
        return table
    from wallwm_edge.events import vocab

    keys = {k for task in vocab.TASKS for k in vocab.subtask_keys(task)} | set(vocab.action_keys()) | set(vocab.segment_keys())
    keys |= {f"task:{t}" for t in vocab.TASKS}
    texts = set()
    for k in keys:
        c = vocab.caption(k)
        texts |= {c.text, *c.paraphrases, *c.heldout_paraphrases}
    caps = sorted(texts - set(table))
    if caps:
        emb = np.asarray(embed(caps), np.float32)
        if cfg is not None and emb.shape[1] != cfg.instruction_dim:
            raise ConfigError(f"text encoder gives {emb.shape[1]}-d embeddings, the checkpoint expects {cfg.instruction_dim}")
        table.update(zip(caps, emb))
    return dict(sorted(table.items()))


def gate_feeds_for(cfg, kind: str, source, samples: int, batch: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Fresh gate inputs, plus one batch with empty mask rows so NaN handling is gated on every export.

    With a dataset (`source`), everything is dataset samples seeded apart from calibration, the extra
    batch too (its view masks emptied): an int8 model is calibrated for the robot's images, and random
    pixels would gate it on inputs it will never see (measured: worst cosine 0.83 on uniform-noise
    images vs >= 0.98 on every dataset sample, same model). Without one, synthetic inputs.
    """
    if source is None:
        return [random_feeds(cfg, batch, seed + i, kind) for i in range(max(1, samples // batch))] + [random_feeds(cfg, batch, seed + 7919, kind)]
    feeds = dataset_feeds(cfg, source, samples, batch, seed, kind)
    empty = dataset_feeds(cfg, source, batch, batch, seed + 7919, kind)[0]
    mask = empty["view_mask"].copy()
    mask[:, : max(1, cfg.view_tokens // 8)] = False  # tokens with no allowed view key
    mask[0] = False  # a sample whose view tokens see nothing at all
    return feeds + [empty | {"view_mask": mask}]


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, name: str = "student",
                      graphs: tuple[str, ...] = ("sample", "step"), steps: int | None = None, source=None, embed=None,
                      text_encoder: str = "minilm", precisions: tuple[str, ...] = ("fp32",), gate_samples: int = 16,
                      batch: int = 4, calib_samples: int = 64, seed: int = 0, progress: bool = True, exporter: str = "dynamo",
                      calib_method: str = "percentile", attention_op: bool = False) -> dict:
    """Export, gate and (optionally) quantize every graph of a checkpoint; writes OUT/NAME.export.json.

    attention_op: afterwards, rewrite the float32 and int8 graphs' attentions (float32 in both) as
    `wallwm.BlockSparseAttention` nodes (export/attention_op.py: `_C`'s kernel where it loads, the standard ops
    otherwise), each gated against its standard graph both ways. Quantization works on the standard graph first.

    `source` (a train.samples.SampleSource on the checkpoint's dataset) gives calibration and gate
    inputs and the caption table; without it the gates use synthetic inputs and int8 is refused.
    All or nothing: the files are written to a hidden staging folder beside OUT and moved into OUT once
    every gate passed; on any failure (a missed gate, Ctrl-C) the staging folder is removed and OUT is
    as it was.
    """
    model, header = load_for_export(checkpoint)
    cfg = model.cfg
    steps = int(steps or cfg.flow_steps)
    unknown = [g for g in graphs if g not in GRAPHS]
    if unknown:
        raise ConfigError(f"unknown graph(s) {unknown}; choose from {', '.join(GRAPHS)}")
    if "int8" in precisions and source is None:
        raise ConfigError("int8 needs calibration batches from the dataset: pass --data (the checkpoint's dataset)")
    final = Path(out_dir)
    if final.exists() and not final.is_dir():
        raise ConfigError(f"--out {final} is a file, not a folder")
    created = [d for d in (final.parent, *final.parent.parents) if not d.exists()]  # removed again on failure
    out_dir = staging_dir(final)
    try:
        report = _export_into(model, header, checkpoint, out_dir, name, graphs, steps, source, embed, text_encoder, precisions,
                              gate_samples, batch, calib_samples, seed, progress, exporter, calib_method, attention_op)
        for rows in report["graphs"].values():
            for r in rows:
                r["file"] = str(final / Path(r["file"]).name)
        (out_dir / f"{name}.export.json").write_text(json.dumps(report, indent=1) + "\n")
        publish(out_dir, final)
    except BaseException as e:
        shutil.rmtree(out_dir, ignore_errors=True)
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()
        if isinstance(e, parity.ParityError):
            raise parity.ParityError(f"{e}; nothing was written to {final}") from None
        raise
    return report


def _export_into(model, header, checkpoint, out_dir: Path, name, graphs, steps, source, embed, text_encoder, precisions,
                 gate_samples, batch, calib_samples, seed, progress, exporter, calib_method, attention_op=False) -> dict:
    from tqdm import tqdm

    from wallwm_edge.export.quantize import quantize_variants, size_mb

    cfg = model.cfg
    captions = caption_table(source, embed, cfg)
    report = {"checkpoint": str(checkpoint), "preset": cfg.name, "steps": steps, "text_encoder": text_encoder, "exporter": exporter, "graphs": {}}
    stages = [(g, p) for g in graphs for p in ("fp32", *[q for q in precisions if q != "fp32"])]
    bar = tqdm(total=len(stages), desc=f"export {name}", disable=not progress, dynamic_ncols=True)
    try:
        for kind in graphs:
            path = out_dir / f"{name}.{kind}.onnx"
            bar.set_postfix_str(f"{kind} fp32: torch.onnx.export")
            export_graph(model, kind, path, steps, exporter=exporter)
            gate_feeds = gate_feeds_for(cfg, kind, source, gate_samples, batch, seed + 100)
            rep = check_parity(model, kind, path, gate_feeds, steps, "fp32")
            gate_or_remove(rep, path)
            info = sidecar_info(model, header, kind, steps, "fp32", captions, [rep])
            info["text_encoder"] = text_encoder
            write_sidecar(path, info)
            rows = [{"precision": "fp32", "file": str(path), "size_mb": round(size_mb(path), 3), "parity": rep.to_json()}]
            bar.update(1)
            quant = tuple(q for q in precisions if q != "fp32")
            if quant:
                bar.set_postfix_str(f"{kind} {','.join(quant)}")
                calib = dataset_feeds(cfg, source, calib_samples, batch, seed + 200, kind) if source is not None else []
                rows += quantize_variants(model, header, path, quant, calib, gate_feeds, captions=captions, calib_method=calib_method)
                bar.update(len(quant))
            if attention_op:  # after quantization, which works on the standard graph; float32 kernel: not fp16
                from wallwm_edge.export.attention_op import fuse_export

                bar.set_postfix_str(f"{kind} attention op")
                for r in rows:
                    if r["precision"] in ("fp32", "int8"):
                        r["attention_op"] = fuse_export(r["file"], gate_feeds, r["precision"])
            report["graphs"][kind] = rows
    finally:
        bar.close()
    return report
