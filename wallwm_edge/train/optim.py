"""Optimizers: torch.optim.Muon on the 2-D hidden weight matrices, AdamW on everything else.

"Hidden" = the weight matrices inside the coupled layers and the reasoner's blocks (qkv, output
projection, MLP, adaLN). Embeddings and input projections (obs/video/action/instruction/proprio in,
position tables), output heads, norms and biases stay on AdamW: Muon's orthogonalised update is meant
for matrices that map a hidden state to a hidden state, and torch's Muon refuses non-2-D tensors anyway.

Muon uses adjust_lr_fn="match_rms_adamw" (its update RMS matches AdamW's), so one learning rate and one
schedule serve both optimizers; `muon_lr` overrides it.
"""

from __future__ import annotations

import torch
from torch import nn

HIDDEN_PREFIXES = ("layers.", "reasoner.blocks.")


def is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    return p.ndim == 2 and name.endswith(".weight") and name.startswith(HIDDEN_PREFIXES)


def split_params(model: nn.Module) -> tuple[list[tuple[str, torch.Tensor]], list[tuple[str, torch.Tensor]]]:
    """(muon params, adamw params) as (name, tensor) lists, in module order."""
    muon, adamw = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (muon if is_hidden_matrix(name, p) else adamw).append((name, p))
    return muon, adamw


def make_optimizers(model: nn.Module, kind: str, lr: float, weight_decay: float, muon_lr: float | None = None) -> list[torch.optim.Optimizer]:
    """kind "muon": [Muon(hidden matrices), AdamW(rest)]; kind "adamw": [AdamW(all)]."""
    muon, rest = split_params(model)
    if kind == "adamw":
        return [torch.optim.AdamW([p for _, p in muon + rest], lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))]
    if kind != "muon":
        raise ValueError(f"optimizer must be 'muon' or 'adamw', got {kind!r}")
    return [
        torch.optim.Muon([p for _, p in muon], lr=muon_lr or lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"),
        torch.optim.AdamW([p for _, p in rest], lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95)),
    ]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup then cosine to 10%: a pure function of the step, so resume needs no scheduler state."""
    import math

    if step < warmup:
        return (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))


def set_lr(optimizers: list[torch.optim.Optimizer], base: list[float], factor: float) -> None:
    for opt, b in zip(optimizers, base):
        for g in opt.param_groups:
            g["lr"] = b * factor
