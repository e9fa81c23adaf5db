"""The JSON sidecar written beside every exported ONNX: all a torch-free runtime needs to drive it.

`student.sample.onnx` gets `student.sample.json`:

    {"format": "wallwm-onnx/1",
     "onnx": "student.sample.onnx", "sha256": "...", "kind": "sample" | "step",
     "precision": "fp32" | "fp16" | "int8",
     "inputs":  [{"name", "shape": ["batch", 3, ...], "dtype": "float32", "doc"}],
     "outputs": [{"name", "shape", "dtype", "doc"}],
     "preset": "student", "config": {...the model config...},
     "steps": 2, "views": ["corner", ...], "image_size": [H, W], "patch": 8, "L_max": 16,
     "action_dim": 4, "proprio_dim": 4, "text_dim": 384,
     "normalizer": {...as saved in the checkpoint: how to map normalised actions back to robot units...},
     "captions": {"grasp the puck": [384 floats], ...},   # caption -> embedding for known event captions
     "parity": [{...ParityReport...}]}

Why a sidecar and not ONNX metadata_props: it is readable with `json` alone (no onnx package on the
robot), diffable in review, and the caption table would bloat the protobuf's string map. The sha256
ties the two files together; `read_sidecar` refuses a sidecar whose ONNX changed.

numpy/json only (DESIGN.md decision 5).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from wallwm_edge.data.episode import sha256_file
from wallwm_edge.errors import DataError, read_json_object
from wallwm_edge.validate import array, integer, number, obj, optional, quote, require, string

FORMAT = "wallwm-onnx/1"
REQUIRED = ("onnx", "sha256", "kind", "precision", "inputs", "outputs", "preset", "steps", "views", "image_size",
            "patch", "L_max", "action_dim", "normalizer", "captions")
_TENSOR = obj({"name": string(nonempty=True, max_len=100), "shape": array(), "dtype": string(max_len=32)}, required=("name", "shape"))
_MOMENTS = obj({"mean": array(number()), "std": array(number(positive=True))}, required=("mean", "std"))
# Types, sizes and finiteness of what the torch-free runtime reads from a sidecar: refused here in one
# line, never as a traceback in the middle of `run`.
SPEC = obj({
    "onnx": string(nonempty=True, max_len=255),
    "sha256": string(max_len=64),
    "kind": string(choices=("sample", "step")),
    "precision": string(max_len=16),
    "inputs": array(_TENSOR, min_len=1),
    "outputs": array(_TENSOR, min_len=1),
    "preset": string(max_len=200),
    "steps": integer(1, 1000),
    "views": array(string(nonempty=True, max_len=200), min_len=1, unique=True),
    "image_size": array(integer(1, 1 << 16), length=2),
    "patch": integer(1, 1 << 12),
    "L_max": integer(1, 1 << 16),
    "action_dim": integer(1, 1 << 12),
    "proprio_dim": integer(0, 1 << 12),
    "text_dim": integer(1, 1 << 16),
    "mode": string(choices=("event", "unified")),
    "normalizer": obj({"action": _MOMENTS, "proprio": optional(_MOMENTS)}, required=("action",)),
    "captions": obj(values=array(number(), min_len=1)),
    "config": optional(obj({"near": number(positive=True), "far": number(positive=True), "n_future": integer(1, 64)})),
    "rig": optional(obj()),
}, required=REQUIRED)


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    return Path(onnx_path).with_suffix(".json")


def file_sha256(path: str | os.PathLike) -> str:
    return sha256_file(Path(path))


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if hasattr(x, "tolist"):  # torch tensors, without importing torch
        return x.tolist()
    return x


def write_sidecar(onnx_path: str | os.PathLike, info: dict) -> Path:
    """Write the sidecar of `onnx_path` from `info` (the fields above); fills onnx, sha256, format."""
    onnx_path = Path(onnx_path)
    record = {"format": FORMAT, "onnx": onnx_path.name, "sha256": file_sha256(onnx_path)}
    record.update(_jsonable(info))
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise DataError(f"{sidecar_path(onnx_path)}: sidecar is missing field(s) {missing}")
    path = sidecar_path(onnx_path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(record) + "\n")
    os.replace(tmp, path)
    return path


def dumps(record: dict) -> str:
    """Indented JSON, except that each caption's embedding is one compact line: one number per line made
    the caption table (~200 x 384 floats) larger than the ONNX it describes."""
    captions = record.get("captions")
    if not isinstance(captions, dict) or not captions:
        return json.dumps(record, indent=1)
    head = json.dumps({k: v for k, v in record.items() if k != "captions"}, indent=1)
    rows = ",\n".join(f"  {json.dumps(text)}: {json.dumps(emb, separators=(',', ':'))}" for text, emb in captions.items())
    return head[: -len("\n}")] + (",\n" if head != "{}" else "\n") + ' "captions": {\n' + rows + "\n }\n}"


def read_sidecar(path: str | os.PathLike, check_hash: bool = True) -> dict:
    """Read and validate a sidecar (give the .json or the .onnx); DataError names the file and field."""
    path = Path(path)
    if path.suffix == ".onnx":
        path = sidecar_path(path)
    record = read_json_object(path, DataError, "sidecar missing (export writes it beside the .onnx)")
    if record.get("format") != FORMAT:
        raise DataError(f"{path}: field 'format' is {record.get('format')!r}, expected {FORMAT!r}")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise DataError(f"{path}: missing field(s) {missing}")
    require(record, SPEC, f"{path}: ")
    name = record["onnx"]
    if Path(name).name != name or name in (".", ".."):  # the graph lives beside its sidecar, never elsewhere
        raise DataError(f"{path}: field 'onnx' must be a file name in the sidecar's folder, got {quote(name, 100)}")
    mean, std = record["normalizer"]["action"]["mean"], record["normalizer"]["action"]["std"]
    if len(mean) != record["action_dim"] or len(std) != record["action_dim"]:
        raise DataError(f"{path}: field 'normalizer.action' has {len(mean)} means and {len(std)} stds, 'action_dim' is {record['action_dim']}")
    if record.get("rig") is not None:
        from wallwm_edge.calibration.rig import Rig

        Rig.from_json(record["rig"], where=f"{path}: rig: ")
    onnx_file = path.parent / name
    if check_hash:
        if not onnx_file.is_file():
            raise DataError(f"{path}: field 'onnx' names {onnx_file}, which does not exist or is not a regular file")
        got = file_sha256(onnx_file)
        if got != record["sha256"]:
            raise DataError(f"{path}: field 'sha256' does not match {onnx_file.name} (file changed after export?)")
    record["onnx_path"] = str(onnx_file)
    return record


def caption_embedding(record: dict, caption: str) -> np.ndarray:
    """The stored embedding of a known caption; DataError listing a few known ones otherwise."""
    table = record.get("captions", {})
    if caption not in table:
        known = ", ".join(quote(c, 60) for c in list(table)[:5])
        raise DataError(f"caption {quote(caption)} is not in the sidecar's table ({len(table)} known, e.g. {known}); "
                        "embed it with the sentence encoder instead")
    return np.asarray(table[caption], dtype=np.float32)
