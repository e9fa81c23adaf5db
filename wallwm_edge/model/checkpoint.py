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

from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.model.presets import ModelConfig
from wallwm_edge.validate import array, describe, integer, number, obj, optional, parse_json, quote, require, string

FORMAT = "wallwm-checkpoint/1"
MODEL_FILE = "model.safetensors"
MAX_WEIGHT = 1e6  # |w| above this is a corrupted weight (one flipped exponent bit makes 3.4e37), not a trained one


def _config_spec() -> dict:
    """Field -> spec of a ModelConfig's JSON, from the dataclass's annotations (ints >= 1 except where 0 is
    meaningful, finite floats, strings, the views list and the (H, W) image size)."""
    import dataclasses

    kinds = {"int": integer(1, 1 << 20), "float": number(lo=-1e6, hi=1e6), "str": string(max_len=200),
             "tuple[str, ...]": array(string(nonempty=True, max_len=200), unique=True), "tuple[int, int]": array(integer(1, 1 << 16), length=2)}
    zero_ok = {"reasoning_states", "reasoner_depth", "proprio_dim"}
    spec = {}
    for f in dataclasses.fields(ModelConfig):
        s = kinds.get(str(f.type))
        if s is not None:
            spec[f.name] = integer(0, 1 << 20) if f.name in zero_ok else s
    spec["near"], spec["far"] = number(positive=True, hi=1e3), number(positive=True, hi=1e3)
    return spec


CONFIG_SPEC = obj(_config_spec(), required=("name",))
HEADER_SPEC = obj({
    "config": CONFIG_SPEC,
    "normalizer": optional(obj(values=obj(values=array(number())))),
    "train_config": optional(obj()),
    "dataset": optional(obj()),
    "distill": optional(obj()),
    "step": optional(integer(0)),
    "rig": optional(obj()),
}, required=("config",))


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
    return write_safetensors(path, tensors, {"wallwm": json.dumps(header)})


def write_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str]) -> Path:
    """Write a .safetensors file atomically (temp file, then rename) with the permissions of any other
    file the user writes (0644 under the usual umask; safetensors itself creates 0600)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
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
    header = parse_json(meta["wallwm"], f"{p}: metadata 'wallwm'", ConfigError)
    if not isinstance(header, dict):
        raise ConfigError(f"{p}: metadata 'wallwm' must be a JSON object, got {describe(header)}")
    if header.get("format") != FORMAT:
        raise ConfigError(f"{p}: checkpoint format is {quote(header.get('format'), 60)}, expected {FORMAT!r}")
    require(header, HEADER_SPEC, f"{p}: metadata 'wallwm' ", ConfigError)
    if header.get("rig") is not None:
        from wallwm_edge.calibration.rig import Rig

        try:
            Rig.from_json(header["rig"], where=f"{p}: metadata 'wallwm' rig: ")
        except DataError as e:
            raise ConfigError(str(e)) from None
    return header


def model_config(header: dict, path: str | os.PathLike = "checkpoint") -> ModelConfig:
    """The ModelConfig of a (read_header-validated) header; ConfigError naming the file otherwise."""
    try:
        return ModelConfig.from_json(header["config"])
    except ConfigError as e:
        raise ConfigError(f"{path}: metadata 'wallwm' config: {e}") from None
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise ConfigError(f"{path}: metadata 'wallwm' config is malformed ({e})") from None


def check_finite_tensors(state: dict, path: str | os.PathLike) -> None:
    """ConfigError naming the first tensor with a NaN, an inf or a value beyond +-MAX_WEIGHT (a flipped
    exponent bit): such a checkpoint would run, and silently produce (or teach) NaN actions."""
    for name, t in state.items():
        if not torch.is_tensor(t) or not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
            continue
        x = t.detach().float() if t.dtype in (torch.float16, torch.bfloat16) else t.detach()
        bad = ~torch.isfinite(x) | (x.abs() > MAX_WEIGHT)
        if bool(bad.any()):
            n = int(bad.sum())
            i = int(bad.flatten().nonzero()[0, 0])
            v = float(x.flatten()[i])
            raise ConfigError(f"{path}: tensor {quote(name, 120)} has {n} non-finite or implausible value(s) "
                              f"(first: {v:.4g} at flat index {i}; |w| must be finite and <= {MAX_WEIGHT:g}): a corrupted checkpoint")


def load_model(path: str | os.PathLike, map_location: str = "cpu") -> tuple[WallWM, dict]:
    p = model_path(path)
    header = read_header(p)
    model = WallWM(model_config(header, p))
    try:
        state = load_file(str(p), device=map_location)
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{p}: cannot read the checkpoint's tensors ({e})") from None
    check_finite_tensors(state, p)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{p}: checkpoint does not match its config (missing {missing[:4]}, unexpected {unexpected[:4]})")
    return model.eval(), header
