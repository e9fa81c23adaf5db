"""Training state for EXACT resume, as safetensors + JSON (no pickles).

    train_state.safetensors  tensors: "opt{i}/{param index}/{name}" optimizer state tensors,
                                      "rng/torch_flow" (flow-noise generator), "rng/torch_global"
                             metadata["wallwm_train"]: JSON {"step", "train_config", "optimizers":
                                      [{"param_groups", "scalars"}], "rng_numpy": PCG64 state}

The model weights live in model.safetensors beside it (model/checkpoint.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, safe_open

from wallwm_edge.errors import ConfigError
from wallwm_edge.model.checkpoint import write_safetensors

STATE_FILE = "train_state.safetensors"


def save_train_state(path: str | os.PathLike, step: int, optimizers, np_rng: np.random.Generator, flow_gen: torch.Generator, train_config: dict) -> Path:
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {"rng/torch_flow": flow_gen.get_state(), "rng/torch_global": torch.get_rng_state()}
    opts = []
    for i, opt in enumerate(optimizers):
        sd = opt.state_dict()
        scalars = {}
        for pidx, st in sd["state"].items():
            for name, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"opt{i}/{pidx}/{name}"] = v.detach().cpu().contiguous().clone()
                else:
                    scalars[f"{pidx}/{name}"] = v
        groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
        opts.append({"param_groups": groups, "scalars": scalars})
    meta = {"step": int(step), "train_config": train_config, "optimizers": opts, "rng_numpy": np_rng.bit_generator.state}
    return write_safetensors(path, tensors, {"wallwm_train": json.dumps(meta)})


def load_train_state(path: str | os.PathLike, optimizers, np_rng: np.random.Generator, flow_gen: torch.Generator) -> dict:
    """Restore optimizers and RNGs in place; returns the JSON metadata (step, train_config)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no training state to resume from")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {})["wallwm_train"])
    tensors = load_file(str(path))
    if len(meta["optimizers"]) != len(optimizers):
        raise ConfigError(f"{path}: saved with {len(meta['optimizers'])} optimizer(s), this run has {len(optimizers)} (different --optimizer?)")
    for i, (opt, saved) in enumerate(zip(optimizers, meta["optimizers"])):
        state: dict[int, dict] = {}
        for key, v in tensors.items():
            if key.startswith(f"opt{i}/"):
                _, pidx, name = key.split("/", 2)
                state.setdefault(int(pidx), {})[name] = v
        for key, v in saved["scalars"].items():
            pidx, name = key.split("/", 1)
            state.setdefault(int(pidx), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    flow_gen.set_state(tensors["rng/torch_flow"])
    torch.set_rng_state(tensors["rng/torch_global"])
    np_rng.bit_generator.state = meta["rng_numpy"]
    return meta
