"""Masked attention (the PyTorch reference) and the token layout the sight-cone mask is expanded to.

Token layout of one denoiser call (sequence order, B samples):

    video tower:   obs frame  V*Np  |  future frame 1  V*Np  | ... | future frame F  V*Np
    action tower:  instruction 1  |  proprio 1  |  reasoning states K (unified mode only)  |  actions L

The sight-cone mask M (V*Np, V*Np) says which view tokens share 3D space. It is tiled over every pair of
video frames (obs and future frames use the same cones: the future wrist pose is unknown at inference,
so the current pose stands in for it). Action-tower tokens (instruction, proprio, reasoning states,
actions) attend to everything and every token attends to them: they carry no geometry, and the
coupling of the two towers in every layer is exactly this free exchange.

A row with no allowed key gives ZEROS, never NaN: we open such rows for the softmax (so it stays
finite) and zero their output afterwards. Only standard ops, so ONNX export takes the mask as an input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def expand_view_mask(view_mask: torch.Tensor, n_frames: int, n_free: int) -> torch.Tensor:
    """Full attention mask from the view-token mask.

    view_mask: (B, Vn, Vn) or (Vn, Vn) bool, Vn = V * Np.  n_frames: video frames (1 + F).
    n_free: action-tower tokens (instruction + proprio + K + L). Returns (B, S, S) bool, S = n_frames*Vn + n_free.
    """
    if view_mask.dim() == 2:
        view_mask = view_mask.unsqueeze(0)
    B, Vn, _ = view_mask.shape
    video = view_mask.repeat(1, n_frames, n_frames)  # (B, fVn, fVn): same cones between any two frames
    S = n_frames * Vn + n_free
    full = torch.ones(B, S, S, dtype=torch.bool, device=view_mask.device)
    full[:, : n_frames * Vn, : n_frames * Vn] = video
    return full


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """SDPA with a boolean mask (True = may attend); rows with no allowed key return zeros.

    q, k, v: (B, H, S, Dh). mask: (B, S, S) or (S, S) bool, or None for dense attention.
    """
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v)
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    has_key = mask.any(dim=-1, keepdim=True)  # (B, S, 1)
    safe = mask | ~has_key  # an empty row attends everywhere (finite), then is zeroed below
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe.unsqueeze(1))  # (B, H, S, Dh)
    return out * has_key.unsqueeze(1).to(out.dtype)
