"""Block-sparse masked attention: the `_C` kernel, its references and a torch.library op.

    out[b, h, i] = sum_j softmax_j(scale * q_i . k_j  over allowed j) v_j,    q, k, v, out: (B, H, N, D)

`mask` (N, N) bool says which keys a query may see (the sight-cone mask); `block_mask` (ceil(N/b),
ceil(N/b)) marks the blocks with any allowed pair, and the kernel never reads the others. The mask used
is `mask AND expand(block_mask)`, so pass `block_mask(mask, block)` (or a superset) to get `mask`
exactly. A row with no allowed key gives zeros (never NaN), unlike a plain masked softmax.

Devices: float32 on CPU (csrc/attention.cpp), float16 / bfloat16 on CUDA (csrc/cuda/attention.cu). Arrays
can be numpy, torch or CuPy; outputs are allocated like `q`. Under torch.compile / torch.export call
`torch.ops.wallwm.block_sparse_attention` (registered below with a fake kernel); the ONNX export path
uses standard ops instead (wallwm_edge/model/attention.py), not this op.
"""

from __future__ import annotations

import math

import numpy as np

from wallwm_edge.ops import ext
from wallwm_edge.ops.sightcone import block_mask as make_block_mask

DEFAULT_BLOCK = 16


# ---- references ----------------------------------------------------------------------------------------


def attention_reference_np(q, k, v, mask, scale: float | None = None) -> np.ndarray:
    """float64 numpy reference, (B, H, N, D); fully masked rows give zeros."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    mask = np.asarray(mask, bool)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = np.where(mask, (q @ np.swapaxes(k, -1, -2)) * scale, -np.inf)  # (B, H, N, N)
    mx = s.max(-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    p = np.exp(s - mx)
    l = p.sum(-1, keepdims=True)
    return np.where(l > 0, (p / np.where(l > 0, l, 1.0)) @ v, 0.0)


def attention_reference_torch(q, k, v, mask, scale: float | None = None):
    """Plain PyTorch reference in the inputs' dtype (SDPA + zeroing of fully masked rows)."""
    import torch

    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return torch.where(mask.any(-1)[..., None], out, torch.zeros((), dtype=out.dtype, device=out.device))


# ---- row order: which query rows share a tile ------------------------------------------------------------

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.int32)


def attention_row_order(mask, tile: int = 16) -> np.ndarray:
    """(N,) int32 permutation grouping query rows that see similar keys into tiles of `tile` rows.

    The CPU kernel computes, per 16-row tile, every key that any row of the tile may see; grouping rows
    with similar key sets shrinks that union (about 10 % less work on Meta-World sight-cone masks). Greedy:
    each tile starts at the lowest unassigned row and adds the row that grows the key union least (ties to
    the lowest index, which keeps neighbouring patches together). Compute it once per mask (a static rig),
    pass it as `row_order`; the result does not depend on it.
    """
    m = np.asarray(mask, bool)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"mask: must be square (N, N), got shape {m.shape}")
    bits = np.packbits(m, axis=1)  # (N, ceil(N/8))
    left = np.ones(len(m), bool)
    order = []
    while left.any():
        seed = int(np.flatnonzero(left)[0])
        left[seed] = False
        group, union = [seed], bits[seed].copy()
        while len(group) < tile and left.any():
            cand = np.flatnonzero(left)
            best = int(cand[np.argmin(_POPCOUNT[bits[cand] & ~union].sum(1))])
            group.append(best)
            left[best] = False
            union |= bits[best]
        order += group
    return np.asarray(order, np.int32)


# ---- the kernel on any array type -------------------------------------------------------------------------


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _empty_like(x):
    if isinstance(x, np.ndarray):
        return np.empty_like(x)
    if _is_torch(x):
        import torch

        return torch.empty_like(x, memory_format=torch.contiguous_format)
    if type(x).__module__.startswith("cupy"):
        import cupy

        return cupy.empty_like(x)
    raise ValueError(f"q: unsupported array type {type(x).__name__} (numpy, torch or CuPy)")


def _stream_of(x) -> int:
    """The current CUDA stream of x's framework as an integer handle (0 = default), without synchronizing."""
    if _is_torch(x) and x.is_cuda:
        import torch

        return int(torch.cuda.current_stream(x.device).cuda_stream)
    if type(x).__module__.startswith("cupy"):
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    return 0


def block_sparse_attention(q, k, v, mask, block_mask=None, block: int = DEFAULT_BLOCK, scale: float | None = None, out=None,
                           row_order=None):
    """Block-sparse attention with the `_C` kernel; numpy / torch / CuPy in, same type out (like q).

    row_order: optional (N,) int32 CPU array from `attention_row_order(mask)` (CPU speed only).

    Without the extension it falls back to the float64 reference (numpy) or SDPA (torch), so callers work
    from a plain source checkout.
    """
    D = q.shape[-1]
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if not ext.has("attention_forward"):
        if _is_torch(q):
            return attention_reference_torch(q, k, v, mask.bool(), scale)
        return attention_reference_np(q, k, v, mask, scale).astype(np.asarray(q).dtype)
    if block_mask is None:
        if _is_torch(mask) and mask.is_cuda:
            import torch

            nb = -(-mask.shape[0] // block)
            pad = torch.zeros((nb * block, nb * block), dtype=torch.bool, device=mask.device)
            pad[: mask.shape[0], : mask.shape[1]] = mask
            block_mask = pad.view(nb, block, nb, block).any(3).any(1).contiguous()
        elif _is_torch(mask):
            block_mask = ext.require("block_mask")(mask.detach().contiguous(), block)
        elif type(mask).__module__.startswith("cupy"):
            import cupy

            block_mask = cupy.asarray(make_block_mask(cupy.asnumpy(mask), block))
        else:
            block_mask = ext.require("block_mask")(mask, block) if isinstance(mask, np.ndarray) else make_block_mask(mask, block)
    if _is_torch(q):  # DLPack refuses tensors that require grad; this op is forward-only (inference)
        q, k, v, mask = (t.detach() for t in (q, k, v, mask))
    out = _empty_like(q) if out is None else out
    ext.require("attention_forward")(q, k, v, mask, block_mask, int(block), scale, out, _stream_of(q), row_order)
    return out


# ---- torch.library op (torch.compile / torch.export) ---------------------------------------------------------


def _register_torch_op():
    try:
        import torch
    except ImportError:  # the on-board runtime has no torch: the plain functions above still work
        return None

    # Explicit schema: this module uses postponed annotations and imports torch lazily.
    @torch.library.custom_op("wallwm::block_sparse_attention", mutates_args=(),
                             schema="(Tensor q, Tensor k, Tensor v, Tensor mask, Tensor block_mask, int block, float scale, Tensor? row_order=None) -> Tensor")
    def block_sparse_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, block_mask: torch.Tensor,
                                  block: int, scale: float, row_order: torch.Tensor | None = None) -> torch.Tensor:
        if not ext.has("attention_forward"):
            return attention_reference_torch(q, k, v, mask, scale)
        # detach: DLPack refuses tensors that require grad (this op is forward-only, for inference)
        q, k, v = (t.detach().contiguous() for t in (q, k, v))
        out = torch.empty_like(q)
        order = None if row_order is None or q.is_cuda else row_order.detach().contiguous()
        ext.require("attention_forward")(q, k, v, mask.detach().contiguous(), block_mask.detach().contiguous(), block, scale, out,
                                         _stream_of(q), order)
        return out

    @block_sparse_attention_op.register_fake
    def _(q, k, v, mask, block_mask, block, scale, row_order=None):
        return torch.empty_like(q, memory_format=torch.contiguous_format)

    return block_sparse_attention_op


block_sparse_attention_op = _register_torch_op()
