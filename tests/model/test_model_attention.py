import math

import torch

from wallwm_edge.model.attention import expand_view_mask, masked_attention


def reference(q, k, v, mask):
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = s.masked_fill(~mask[:, None], float("-inf"))
    w = torch.softmax(s, -1)
    return torch.nan_to_num(w, nan=0.0) @ v


def test_masked_attention_matches_softmax_reference_and_empty_rows_are_zero():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8, generator=g, requires_grad=True) for _ in range(3))
    mask = torch.rand(2, 10, 10, generator=g) < 0.4
    mask[0, 3] = False  # a row with no allowed key
    mask[1, 7] = False
    out = masked_attention(q, k, v, mask)
    assert torch.isfinite(out).all()
    assert torch.all(out[0, :, 3] == 0) and torch.all(out[1, :, 7] == 0)
    assert torch.allclose(out, reference(q, k, v, mask), atol=1e-5)
    out.sum().backward()  # the gradient is finite too (no NaN leaks from the empty rows)
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_fully_masked_input_gives_zeros_not_nan():
    q = torch.randn(1, 2, 5, 4)
    out = masked_attention(q, q, q, torch.zeros(5, 5, dtype=torch.bool))
    assert torch.equal(out, torch.zeros_like(out))


def test_expand_view_mask_tiles_frames_and_frees_action_tokens():
    vm = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    full = expand_view_mask(vm, n_frames=2, n_free=4)  # S = 2*3 + 4
    assert full.shape == (1, 10, 10)
    assert torch.equal(full[0, :3, :3], vm) and torch.equal(full[0, :3, 3:6], vm) and torch.equal(full[0, 3:6, :3], vm)
    assert full[0, 6:].all() and full[0, :, 6:].all()
