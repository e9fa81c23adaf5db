"""Optimizers: torch.optim.Muon on the 2-D hidden weight matrices, AdamW on everything else.

"Hidden" = the weight matrices inside the coupled layers and the reasoner's blocks (qkv, output
projection, MLP, adaLN). Embeddings and input projections (obs/video/action/instruction/proprio in,
position tables), output heads, norms and biases stay on AdamW: Muon's orthogonalised update is meant
for matrices that map a hidden state to a hidden state, and torch's Muon refuses non-2-D tensors anyway.

Muon uses adjust_lr_fn="match_rms_adamw" (its update RMS matches AdamW's), so one learning rate and one
schedule serve both optimizers; `muon_lr` overrides it.

Orthogonalization precision. torch.optim.Muon runs its Newton-Schulz iteration in bfloat16. A CPU
without native bf16 arithmetic (AVX2 without AVX512-BF16/AMX) emulates it: measured on such a machine
3.0 of 3.24 s of a teacher step went into the optimizer, 0.49 s/step with the iteration in float32 (the
update within 1.2 % relative). `Muon` below is torch.optim.Muon with one knob, `ns_dtype`: "auto" keeps
bfloat16 on CUDA and on CPUs that have native bf16, float32 elsewhere. torch exposes no such option, so
the float32 path swaps torch's module-level `_zeropower_via_newtonschulz` (the one function that holds
the dtype) for the same iteration in float32 for the duration of `step()`; every other line of the
update (momentum, Nesterov, lr adjustment, weight decay) stays torch's own.
"""

from __future__ import annotations

import functools
import threading

import torch
import torch.optim._muon as _torch_muon
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


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 arithmetic (x86 AVX512-BF16 / AMX-BF16, ARM BF16); False if unknown."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f in flags for f in (" avx512_bf16", " amx_bf16", " bf16"))


def resolve_ns_dtype(ns_dtype: str, device: torch.device | str = "cpu") -> torch.dtype:
    """"auto" -> bfloat16 on CUDA or a CPU with native bf16, else float32; or "bfloat16" / "float32"."""
    if ns_dtype == "auto":
        native = torch.device(device).type == "cuda" or cpu_has_native_bf16()
        return torch.bfloat16 if native else torch.float32
    if ns_dtype not in ("bfloat16", "float32"):
        raise ValueError(f"ns_dtype must be 'auto', 'bfloat16' or 'float32', got {ns_dtype!r}")
    return getattr(torch, ns_dtype)


def newton_schulz(grad: torch.Tensor, ns_coefficients, ns_steps: int, eps: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """torch's quintic Newton-Schulz orthogonalization (torch/optim/_muon.py), in `dtype`."""
    a, b, c = ns_coefficients
    x = grad.to(dtype)
    tall = grad.size(0) > grad.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= 1
    for _ in range(ns_steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


_SWAP_LOCK = threading.Lock()


class Muon(torch.optim.Muon):
    """torch.optim.Muon whose orthogonalization runs in `ns_dtype` ("auto", "bfloat16", "float32")."""

    def __init__(self, params, *args, ns_dtype: str = "auto", **kwargs):
        super().__init__(params, *args, **kwargs)
        first = next((p for g in self.param_groups for p in g["params"]), None)
        self.ns_dtype = resolve_ns_dtype(ns_dtype, first.device if first is not None else "cpu")

    @torch.no_grad()
    def step(self, closure=None):
        if self.ns_dtype == torch.bfloat16:
            return super().step(closure)
        with _SWAP_LOCK:
            original = _torch_muon._zeropower_via_newtonschulz
            _torch_muon._zeropower_via_newtonschulz = functools.partial(_ns_checked, dtype=self.ns_dtype)
            try:
                return super().step(closure)
            finally:
                _torch_muon._zeropower_via_newtonschulz = original


def _ns_checked(grad, ns_coefficients, ns_steps, eps, dtype):
    if ns_steps >= 100 or grad.ndim != 2 or len(ns_coefficients) != 3:
        raise ValueError(f"Newton-Schulz needs a 2-D gradient, 3 coefficients and < 100 steps (got {tuple(grad.shape)}, {ns_coefficients}, {ns_steps})")
    return newton_schulz(grad, ns_coefficients, ns_steps, eps, dtype)


def make_optimizers(model: nn.Module, kind: str, lr: float, weight_decay: float, muon_lr: float | None = None,
                    ns_dtype: str = "auto") -> list[torch.optim.Optimizer]:
    """kind "muon": [Muon(hidden matrices), AdamW(rest)]; kind "adamw": [AdamW(all)]."""
    muon, rest = split_params(model)
    if kind == "adamw":
        return [torch.optim.AdamW([p for _, p in muon + rest], lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))]
    if kind != "muon":
        raise ValueError(f"optimizer must be 'muon' or 'adamw', got {kind!r}")
    return [
        Muon([p for _, p in muon], lr=muon_lr or lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw", ns_dtype=ns_dtype),
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
