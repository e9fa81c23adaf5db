"""Model checkpoint: ONE safetensors file, weights + a JSON header.

    model.safetensors   tensors: the model's state_dict (autoencoder and normalizers included)
                        metadata["wallwm"]: JSON {"format": "wallwm-checkpoint/1", "config": ModelConfig,
                          "normalizer": {"action": {mean, std}, "proprio": {...}}, "dataset": {"name",
                          "root", "fingerprint"}, "step", "rig": wallwm-rig/1 JSON or null, ...}

The trainer keeps optimizer and RNG state for exact resume beside it (train/state.py); a policy needs
only this file. `load_model` accepts the file or the run folder that holds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from wallwm_edge.errors import ConfigError
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.model.presets import ModelConfig

FORMAT = "wallwm-checkpoint/1"
MODEL_FILE = "model.safetensors"


def model_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.is_file():
        raise ConfigError(f"{p}: checkpoint not found (pass a model.safetensors file or the training run folder)")
    return p


def save_model(path: str | os.PathLike, model: WallWM, meta: dict) -> Path:
    """Atomic write: a reader never sees half a checkpoint."""
    path = Path(path)
    header = dict(meta)
    header["format"] = FORMAT
    header["config"] = model.cfg.to_json()
    header["normalizer"] = {"action": model.action_norm.stats(), "proprio": model.proprio_norm.stats()}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata={"wallwm": json.dumps(header)})
    os.replace(tmp, path)
    return path


def read_header(path: str | os.PathLike) -> dict:
    p = model_path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{p}: not a safetensors checkpoint ({e})") from None
    if "wallwm" not in meta:
        raise ConfigError(f"{p}: safetensors file has no 'wallwm' header: not a wallwm-edge checkpoint")
    header = json.loads(meta["wallwm"])
    if header.get("format") != FORMAT:
        raise ConfigError(f"{p}: checkpoint format is {header.get('format')!r}, expected {FORMAT!r}")
    return header


def load_model(path: str | os.PathLike, map_location: str = "cpu") -> tuple[WallWM, dict]:
    p = model_path(path)
    header = read_header(p)
    model = WallWM(ModelConfig.from_json(header["config"]))
    state = load_file(str(p), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{p}: checkpoint does not match its config (missing {missing[:4]}, unexpected {unexpected[:4]})")
    return model.eval(), header
