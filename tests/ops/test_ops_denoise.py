"""The fused denoising loop: against the float64 loop, prefix freeze, unnormalize/clamp, ops under export."""

import numpy as np
import pytest
import torch

from wallwm_edge.ops import ext
from wallwm_edge.ops.denoise import (DenoiseLoop, denoise, denoise_reference, flow_schedule, flow_update_op, torch_velocity,
                                     unnormalize_clamp_op)

needs_ext = pytest.mark.skipif(not ext.has("denoise_loop"), reason="wallwm_edge._C is not built")
needs_gpu = pytest.mark.skipif(not ext.cuda_available(), reason="needs a CUDA GPU (and _C built with CUDA)")


class Net:
    """A small nonlinear velocity field (numpy, any float dtype); counts its calls."""

    def __init__(self, A: int, rng):
        self.W1 = rng.standard_normal((A, 32)) / np.sqrt(A)
        self.W2 = rng.standard_normal((32, A)) / np.sqrt(32)
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        dt = x.dtype
        h = np.tanh(x @ self.W1.astype(dt) + np.asarray(t, dt))
        return (h @ self.W2.astype(dt) - x * np.asarray(0.5, dt)).astype(dt)


def _case(B, L, A, P, rng):
    x0 = rng.standard_normal((B, L, A)).astype(np.float32)
    prefix = rng.standard_normal((B, P, A)).astype(np.float32) if P else None
    mean = rng.standard_normal(A).astype(np.float32)
    std = rng.uniform(0.5, 2.0, A).astype(np.float32)
    lo, hi = mean - 1.5, mean + 1.5
    return x0, prefix, mean, std, lo.astype(np.float32), hi.astype(np.float32)


@needs_ext
@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("B,L,A,P,K", [(1, 1, 1, 0, 1), (2, 16, 7, 3, 10), (3, 50, 4, 0, 5), (2, 9, 5, 9, 4)])
def test_fused_loop_matches_float64_within_2x_float32_loop_error(method, B, L, A, P, K):
    rng = np.random.default_rng(B * 1000 + L * 10 + P)
    x0, prefix, mean, std, lo, hi = _case(B, L, A, P, rng)
    net = Net(A, rng)
    ts = flow_schedule(K, "cosine")
    ref = denoise_reference(net, x0, ts, method, prefix, mean, std, lo, hi)  # float64
    f32 = denoise_reference(net, x0, ts, method, prefix, mean, std, lo, hi, dtype=np.float32)
    out = np.full_like(x0, np.nan)  # poisoned
    net.calls = 0
    got = denoise(net, x0, ts, method, prefix, mean, std, lo, hi, out=out)
    assert got is out and not np.isnan(out).any()
    assert net.calls == K * (2 if method == "heun" else 1)
    err, base = np.abs(out - ref).max(), np.abs(f32 - ref).max()
    assert err <= 2 * max(base, 4 * np.finfo(np.float32).eps * np.abs(ref).max()), (err, base)
    if P:  # the frozen prefix comes out exactly as given (unnormalized, clamped)
        np.testing.assert_array_equal(out[:, :P], np.clip(prefix * std + mean, lo, hi))
    assert np.all(out >= lo) and np.all(out <= hi)


@needs_ext
def test_callback_may_return_torch_tensors_and_reuse_its_buffer():
    rng = np.random.default_rng(7)
    x0, prefix, mean, std, _, _ = _case(2, 8, 3, 2, rng)
    net = Net(3, rng)
    buf = torch.zeros(2, 8, 3)

    def torch_net(x, t):  # writes into one persistent buffer, like an engine's output binding
        buf.copy_(torch.from_numpy(net(x, t)))
        return buf

    ts = flow_schedule(6)
    want = denoise_reference(net, x0, ts, "heun", prefix, mean, std)
    np.testing.assert_allclose(denoise(torch_net, x0, ts, "heun", prefix, mean, std), want, atol=1e-5)
    # The prepared loop with the torch adapter (cached tensor views of the loop's buffers), twice.
    loop = DenoiseLoop(torch_velocity(lambda x, t: torch.from_numpy(net(x.numpy(), t))), ts, "heun", mean, std)
    for _ in range(2):
        np.testing.assert_allclose(loop(x0, prefix), want, atol=1e-5)


@needs_ext
def test_bad_inputs_name_the_argument():
    C = ext.module()
    rng = np.random.default_rng(8)
    x0, prefix, mean, std, lo, hi = _case(2, 8, 3, 2, rng)
    net, ts, out = Net(3, rng), flow_schedule(3).astype(np.float32), np.zeros_like(x0)
    good = dict(velocity_fn=net, x0=x0, ts=ts, method="euler", prefix=prefix, mean=mean, std=std, lo=lo, hi=hi, out=out)
    cases = [
        ("x0", dict(x0=x0.astype(np.float64))),
        ("x0", dict(x0=x0[0])),
        ("ts", dict(ts=ts[:1])),
        ("ts", dict(ts=np.array([0.0, np.nan]))),
        ("method", dict(method="rk4")),
        ("prefix", dict(prefix=np.zeros((2, 9, 3), np.float32))),
        ("prefix", dict(prefix=np.zeros((2, 2, 4), np.float32))),
        ("mean", dict(mean=mean[:2])),
        ("std", dict(std=std.astype(np.float64))),
        ("lo", dict(lo=np.zeros(4, np.float32))),
        ("out", dict(out=np.zeros((2, 8, 2), np.float32))),
        ("velocity_fn result", dict(velocity_fn=lambda x, t: x[:, :2])),
        ("velocity_fn result", dict(velocity_fn=lambda x, t: x.astype(np.float64))),
    ]
    for name, bad in cases:
        with pytest.raises(ValueError, match=f"^{name}"):
            C.denoise_loop(**(good | bad))
    with pytest.raises(ZeroDivisionError):  # the network's own error comes through unchanged
        C.denoise_loop(**(good | dict(velocity_fn=lambda x, t: 1 / 0)))
    with pytest.raises(ValueError, match="^v2"):
        C.flow_update(x0, x0, x0[:1], 0.5, 0.5, 0.1, None, out)
    with pytest.raises(ValueError, match="steps"):
        flow_schedule(0)


@needs_ext
def test_update_ops_export_and_opcheck():
    rng = np.random.default_rng(9)
    x, v1, v2 = (torch.from_numpy(rng.standard_normal((2, 6, 3)).astype(np.float32)) for _ in range(3))
    pre = torch.from_numpy(rng.standard_normal((2, 2, 3)).astype(np.float32))
    mean, std = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.0, 2.0, 0.5])
    torch.library.opcheck(flow_update_op, (x, v1, v2, 0.5, 0.5, -0.1, pre))
    torch.library.opcheck(flow_update_op, (x, v1, None, 1.0, 0.0, 0.25, None))
    torch.library.opcheck(unnormalize_clamp_op, (x, mean, std, mean - 1, None))

    class Step(torch.nn.Module):
        def forward(self, x, v1, v2, pre):
            y = torch.ops.wallwm.flow_update(x, v1, v2, 0.5, 0.5, 0.2, pre)
            return torch.ops.wallwm.unnormalize_clamp(y, mean, std, mean - 1, mean + 1)

    ep = torch.export.export(Step(), (x, v1, v2, pre))
    got = ep.module()(x, v1, v2, pre)
    want = x + 0.2 * 0.5 * (v1 + v2)
    want[:, :2] = pre
    torch.testing.assert_close(got, torch.clamp(want * std + mean, mean - 1, mean + 1))


@pytest.mark.cuda
@needs_gpu
def test_cuda_graph_loop_matches_cpu():
    from wallwm_edge.ops.denoise import CudaDenoiseGraph

    rng = np.random.default_rng(10)
    x0, prefix, mean, std, lo, hi = _case(2, 16, 4, 3, rng)
    net = Net(4, rng)
    W1, W2 = (torch.tensor(w, dtype=torch.float32, device="cuda") for w in (net.W1, net.W2))
    torch_net = lambda x, t: torch.tanh(x @ W1 + t) @ W2 - 0.5 * x  # noqa: E731
    ts = flow_schedule(8)
    g = CudaDenoiseGraph(torch_net, x0.shape, ts, "heun", 3, mean, std, lo, hi)
    got = g.replay(torch.from_numpy(x0).cuda(), torch.from_numpy(prefix).cuda()).cpu().numpy()
    np.testing.assert_allclose(got, denoise_reference(net, x0, ts, "heun", prefix, mean, std, lo, hi), atol=1e-4)
