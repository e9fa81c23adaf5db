"""The exported sentence encoder's files and their torch-free reader: all-MiniLM-L6-v2 as ONNX + `tokenizers`.

The on-board runtime (runtime/engine.py) embeds instructions with it; the exporter (export/text_encoder.py)
writes these files and gates them through this same reader.

    enc = TextEncoder.find("checkpoints/student")       # None when the folder carries no encoder
    E = enc.encode(["put the puck on the target"])      # (N, 384) float32, L2-normalised

`wallwm-edge export-encoder --out DIR` writes, beside the student's sidecar:

    DIR/text_encoder.onnx        fp32 graph: BERT + mean pooling over the attention mask + L2 normalisation,
                                 so its output is exactly sentence-transformers' encode(normalize_embeddings=True)
    DIR/text_encoder.int8.onnx   the same, int8 weights (onnxruntime dynamic quantization)
    DIR/tokenizer.json           the model's own fast tokenizer
    DIR/text_encoder.json        {"format": "wallwm-text-encoder/1", "model", "dim", "max_length",
                                  "files": {"fp32": ..., "int8": ...}, "sha256": {...}, "parity": {...}}

Tokenization is sentence-transformers': the BERT tokenizer ([CLS] text [SEP], lower case), truncated
to max_length (256 word pieces, the model's `max_seq_length`; tokenizer.json itself says 128 and pads
to 128, which sentence-transformers overrides), padded only to the longest text of a batch.
numpy + onnxruntime + tokenizers only (DESIGN.md decision 5).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError, DataError

FORMAT = "wallwm-text-encoder/1"
META = "text_encoder.json"
TOKENIZER = "tokenizer.json"
FILES = {"fp32": "text_encoder.onnx", "int8": "text_encoder.int8.onnx"}
PRECISION_ORDER = ("fp32", "int8")  # fp32 first: it is the encoder the caption tables were made with
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "embedding"


class TextEncoder:
    """Text -> (384,) unit vectors with onnxruntime; `threads` caps onnxruntime's intra-op threads."""

    def __init__(self, onnx_path: str | os.PathLike, tokenizer_path: str | os.PathLike, max_length: int = 256,
                 threads: int | None = 1, precision: str = "fp32", model: str = "all-MiniLM-L6-v2"):
        from tokenizers import Tokenizer

        from wallwm_edge.export.onnx_export import session

        self.path, self.precision, self.model = Path(onnx_path), precision, model
        self.max_length = int(max_length)
        try:
            tok = Tokenizer.from_file(str(tokenizer_path))
        except Exception as e:  # tokenizers raises its own exception type
            raise ConfigError(f"{tokenizer_path}: not a tokenizers tokenizer.json: {str(e).splitlines()[0][:200]}") from None
        tok.enable_truncation(max_length=self.max_length)
        tok.no_padding()  # a batch is padded here, to its longest text
        self.tokenizer = tok
        self.sess = session(self.path, threads, error=ConfigError)
        names = [i.name for i in self.sess.get_inputs()]
        if sorted(names) != sorted(INPUTS) or [o.name for o in self.sess.get_outputs()] != [OUTPUT]:
            raise ConfigError(f"{self.path}: graph takes {names}, the text encoder feeds {list(INPUTS)} and reads {OUTPUT!r}")
        self.dim = int(self.sess.get_outputs()[0].shape[-1])

    @classmethod
    def find(cls, folder: str | os.PathLike, precision: str = "auto", threads: int | None = 1) -> "TextEncoder | None":
        """The encoder exported into `folder` (its text_encoder.json), or None when there is none."""
        folder = Path(folder)
        meta_path = folder / META
        if not meta_path.is_file():
            return None
        meta = read_meta(meta_path)
        files = meta["files"]
        if precision == "auto":
            precision = next((p for p in PRECISION_ORDER if p in files), None) or sorted(files)[0]
        if precision not in files:
            raise ConfigError(f"{meta_path}: no {precision} text encoder; it has {sorted(files)}")
        onnx_path = folder / files[precision]
        if not onnx_path.is_file():
            raise ConfigError(f"{meta_path}: names {onnx_path.name}, which is missing: re-run `wallwm-edge export-encoder --out {folder}`")
        return cls(onnx_path, folder / meta.get("tokenizer", TOKENIZER), int(meta["max_length"]), threads, precision,
                   str(meta.get("model", "all-MiniLM-L6-v2")))

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """input_ids and attention_mask (N, T) int64, T = the longest text's length (<= max_length)."""
        encs = self.tokenizer.encode_batch(list(texts))
        T = max((len(e.ids) for e in encs), default=0)
        ids = np.zeros((len(encs), T), np.int64)
        mask = np.zeros((len(encs), T), np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = e.attention_mask
        return {"input_ids": ids, "attention_mask": mask}

    def encode(self, texts: list[str] | str, batch_size: int = 32) -> np.ndarray:
        """(N, dim) float32 L2-normalised embeddings (sentence-transformers' encode(normalize_embeddings=True))."""
        if isinstance(texts, str):
            texts = [texts]
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise DataError(f"text encoder: texts must be strings, got {type(bad[0]).__name__}")
        out = [self.sess.run([OUTPUT], self.tokenize(texts[i : i + batch_size]))[0] for i in range(0, len(texts), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    __call__ = encode

    @property
    def name(self) -> str:
        return f"{self.model} ({self.path.name}, {self.precision})"


def read_meta(path: str | os.PathLike) -> dict:
    """text_encoder.json, validated: the format, known precisions, plain file names in its folder."""
    from wallwm_edge.errors import read_json_object

    path = Path(path)
    meta = read_json_object(path, ConfigError, "text encoder metadata missing (`wallwm-edge export-encoder` writes it)")
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path}: field 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
    files = meta.get("files")
    if not isinstance(files, dict) or not files or any(p not in FILES for p in files):
        raise ConfigError(f"{path}: field 'files' must map some of {list(FILES)} to file names, got {files!r:.200}")
    names = [*files.values(), meta.get("tokenizer", TOKENIZER)]
    if any(not isinstance(n, str) or Path(n).name != n or n in ("", ".", "..") for n in names):
        raise ConfigError(f"{path}: encoder files must be plain file names in the folder, got {names!r:.200}")
    ml = meta.get("max_length")
    if not isinstance(ml, int) or isinstance(ml, bool) or not 1 <= ml <= 4096:
        raise ConfigError(f"{path}: field 'max_length' must be an integer in [1, 4096], got {ml!r:.50}")
    return meta
