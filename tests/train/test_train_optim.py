"""Muon's orthogonalization dtype: float32 where the CPU has no native bf16, same update as torch's."""

import torch
import torch.optim._muon as torch_muon

from wallwm_edge.train.optim import Muon, newton_schulz, resolve_ns_dtype

COEF = (3.4445, -4.775, 2.0315)


def test_newton_schulz_in_bfloat16_is_torchs_own_iteration():
    g = torch.randn(48, 20, generator=torch.Generator().manual_seed(0))
    ours = newton_schulz(g, COEF, 5, 1e-7, torch.bfloat16)
    torch.testing.assert_close(ours, torch_muon._zeropower_via_newtonschulz(g, COEF, 5, 1e-7), rtol=0, atol=0)


def test_float32_orthogonalization_is_close_to_bfloat16_and_near_orthogonal():
    g = torch.randn(96, 32, generator=torch.Generator().manual_seed(1))
    f32 = newton_schulz(g, COEF, 5, 1e-7, torch.float32)
    bf16 = newton_schulz(g, COEF, 5, 1e-7, torch.bfloat16).float()
    assert f32.dtype == torch.float32
    assert (f32 - bf16).norm() / f32.norm() < 0.03  # bf16 has ~3 significant digits
    s = torch.linalg.svdvals(f32)
    assert s.min() > 0.3 and s.max() < 1.5  # Muon's quintic maps singular values into ~[0.5, 1.5]


def _one_step(ns_dtype: str) -> torch.Tensor:
    w = torch.nn.Parameter(torch.randn(24, 16, generator=torch.Generator().manual_seed(2)))
    opt = Muon([w], lr=0.02, adjust_lr_fn="match_rms_adamw", ns_dtype=ns_dtype)
    w.grad = torch.randn(24, 16, generator=torch.Generator().manual_seed(3))
    opt.step()
    return w.detach().clone()


def test_muon_float32_step_matches_torchs_bfloat16_step_and_restores_torch():
    original = torch_muon._zeropower_via_newtonschulz
    w32, w16 = _one_step("float32"), _one_step("bfloat16")
    assert torch_muon._zeropower_via_newtonschulz is original  # the swap is undone after step()
    w0 = torch.randn(24, 16, generator=torch.Generator().manual_seed(2))
    d32, d16 = w32 - w0, w16 - w0
    assert (d32 - d16).norm() / d16.norm() < 0.03
    assert not torch.equal(w32, w16)  # the float32 path really ran


def test_auto_dtype_follows_the_hardware():
    assert resolve_ns_dtype("float32") == torch.float32
    assert resolve_ns_dtype("bfloat16") == torch.bfloat16
    assert resolve_ns_dtype("auto", "cpu") in (torch.float32, torch.bfloat16)
    try:
        resolve_ns_dtype("fp8")
    except ValueError as e:
        assert "ns_dtype" in str(e)
    else:
        raise AssertionError("fp8 accepted")
