"""The fused denoising loop: K flow-matching steps (Euler or Heun), real-time-chunking prefix freeze,
final unnormalize and clamp.

    x_0 = x0 with rows [0, P) set to prefix                 x (B, L, A) normalized actions
    Euler:  x_{k+1} = F(x_k + dt_k v(x_k, t_k))              dt_k = t_{k+1} - t_k
    Heun:   x' = F(x_k + dt_k v1),  v1 = v(x_k, t_k),  v2 = v(x', t_{k+1})
            x_{k+1} = F(x_k + dt_k (v1 + v2) / 2)
    F(x):   rows [0, P) of every chunk := prefix (the committed prefix of the next chunk is held, the rest
            is denoised around it); output = clamp(x_K * std + mean, lo, hi)

The schedule `ts` (K + 1 times) is explicit, so any schedule works; `flow_schedule` gives the model's
(noise at t = 0, data at t = 1, wallwm_edge/model/flow.py).

CPU: `denoise` runs the whole loop in C++ (`_C.denoise_loop`) and calls the network back in Python once
per (sub)step; `denoise_reference` is the same loop in numpy float64, step for step. CUDA: the update is
`_C.flow_update` / `_C.unnormalize_clamp`, launched on the caller's stream without synchronizing or
allocating, so network and updates for all K steps can be captured into one CUDA graph and replayed per
control step with a single launch (`CudaDenoiseGraph`). Under torch.compile / torch.export the update is
`torch.ops.wallwm.flow_update` (registered below with a fake kernel).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from wallwm_edge.ops import ext

METHODS = ("euler", "heun")


def flow_schedule(steps: int, kind: str = "linear", t0: float = 0.0, t1: float = 1.0) -> np.ndarray:
    """(steps + 1,) float64 times from t0 (noise) to t1 (data). kind: 'linear' or 'cosine' (finer near t1)."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps: must be a positive integer, got {steps!r}")
    u = np.linspace(0.0, 1.0, int(steps) + 1)
    if kind == "cosine":
        u = np.sin(0.5 * np.pi * u)
    elif kind != "linear":
        raise ValueError(f"kind: must be 'linear' or 'cosine', got {kind!r}")
    return t0 + (t1 - t0) * u


def _check(x0, ts, method, prefix, mean, std):
    x0 = np.asarray(x0)
    if x0.ndim != 3:
        raise ValueError(f"x0: expected shape (B, L, A), got {x0.shape}")
    if method not in METHODS:
        raise ValueError(f"method: must be 'euler' or 'heun', got {method!r}")
    ts = np.asarray(ts, np.float64)
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError(f"ts: expected shape (K + 1,) with K >= 1, got {ts.shape}")
    B, L, A = x0.shape
    if prefix is not None and (np.ndim(prefix) != 3 or np.shape(prefix)[0] != B or np.shape(prefix)[2] != A or np.shape(prefix)[1] > L):
        raise ValueError(f"prefix: expected shape ({B}, P <= {L}, {A}), got {np.shape(prefix)}")
    for name, a in (("mean", mean), ("std", std)):
        if np.shape(a) != (A,):
            raise ValueError(f"{name}: expected shape ({A},), got {np.shape(a)}")
    return ts


def denoise_reference(velocity_fn: Callable, x0, ts, method: str = "euler", prefix=None, mean=None, std=None, lo=None, hi=None,
                      dtype=np.float64) -> np.ndarray:
    """The loop in numpy (float64 by default): the Python-loop baseline and the kernel's reference."""
    A = np.shape(x0)[-1]
    mean = np.zeros(A) if mean is None else mean
    std = np.ones(A) if std is None else std
    ts = _check(x0, ts, method, prefix, mean, std)
    x = np.array(x0, dtype=dtype)
    P = 0 if prefix is None else np.shape(prefix)[1]
    pre = None if prefix is None else np.asarray(prefix, dtype)

    def freeze(y):
        if P:
            y[:, :P] = pre
        return y

    freeze(x)
    for k in range(len(ts) - 1):
        dt = ts[k + 1] - ts[k]
        v1 = np.asarray(velocity_fn(x.astype(np.float32) if dtype != np.float64 else x, float(ts[k])), dtype)
        if method == "euler":
            x = freeze(x + dt * v1)
        else:
            xp = freeze(x + dt * v1)
            v2 = np.asarray(velocity_fn(xp.astype(np.float32) if dtype != np.float64 else xp, float(ts[k + 1])), dtype)
            x = freeze(x + dt * 0.5 * (v1 + v2))
    y = x * np.asarray(std, dtype) + np.asarray(mean, dtype)
    if lo is not None:
        y = np.maximum(y, np.asarray(lo, dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi, dtype))
    return y


def denoise(velocity_fn: Callable, x0, ts, method: str = "euler", prefix=None, mean=None, std=None, lo=None, hi=None,
            out=None, use_ext: bool | None = None) -> np.ndarray:
    """The fused CPU loop: float32 numpy in and out; velocity_fn(x (B, L, A) float32, t: float) -> (B, L, A).

    The callback may return numpy or a CPU torch tensor (read in place through DLPack, no copy). Without
    the extension (or use_ext=False) the same loop runs in numpy float32.
    """
    x0 = np.ascontiguousarray(x0, np.float32)
    A = x0.shape[-1]
    f32 = lambda a: None if a is None else np.ascontiguousarray(a, np.float32)  # noqa: E731
    mean = np.zeros(A, np.float32) if mean is None else f32(mean)
    std = np.ones(A, np.float32) if std is None else f32(std)
    ts = _check(x0, ts, method, prefix, mean, std)
    if use_ext is False or (use_ext is None and not ext.has("denoise_loop")):
        return denoise_reference(velocity_fn, x0, ts, method, prefix, mean, std, lo, hi, dtype=np.float32)
    out = np.empty_like(x0) if out is None else out
    ext.require("denoise_loop")(velocity_fn, x0, ts, method, f32(prefix), mean, std, f32(lo), f32(hi), out)
    return out


class DenoiseLoop:
    """The fused CPU loop prepared once (schedule, method, normalizer checked and converted up front), so a
    control step pays only the C++ loop: `loop(x0, prefix) -> (B, L, A)` float32.

    velocity_fn(x, t) gets the loop's own float32 buffers (the same two arrays every step) and returns a
    (B, L, A) float32 CPU array (numpy, or torch through DLPack); wrap a torch network with torch_velocity.
    """

    def __init__(self, velocity_fn: Callable, ts, method: str = "euler", mean=None, std=None, lo=None, hi=None, action_dim: int | None = None):
        A = action_dim if action_dim is not None else np.shape(mean)[-1]
        f32 = lambda a: None if a is None else np.ascontiguousarray(a, np.float32)  # noqa: E731
        self.mean = np.zeros(A, np.float32) if mean is None else f32(mean)
        self.std = np.ones(A, np.float32) if std is None else f32(std)
        self.lo, self.hi = f32(lo), f32(hi)
        if method not in METHODS:
            raise ValueError(f"method: must be 'euler' or 'heun', got {method!r}")
        self.ts = np.ascontiguousarray(ts, np.float64)
        if self.ts.ndim != 1 or len(self.ts) < 2:
            raise ValueError(f"ts: expected shape (K + 1,) with K >= 1, got {self.ts.shape}")
        self.velocity_fn, self.method = velocity_fn, method
        self._loop = ext.require("denoise_loop")

    def __call__(self, x0: np.ndarray, prefix: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(np.shape(x0), np.float32) if out is None else out
        self._loop(self.velocity_fn, x0, self.ts, self.method, prefix, self.mean, self.std, self.lo, self.hi, out)
        return out


def torch_velocity(net: Callable) -> Callable:
    """Adapt a torch network v = net(x: Tensor (B, L, A), t: float) to the fused loop's numpy callback.

    The loop passes the same buffers every step, so each is wrapped by torch.from_numpy once (cached by
    identity, holding the array so its id cannot be reused); the result goes back as a numpy view, no copy.
    """
    import torch

    views: dict[int, tuple] = {}

    def velocity(x: np.ndarray, t: float):
        hit = views.get(id(x))
        if hit is None:
            if len(views) > 8:  # buffers of finished loops
                views.clear()
            hit = views[id(x)] = (x, torch.from_numpy(x))
        v = net(hit[1], t)
        return (v.detach() if v.requires_grad else v).numpy()

    return velocity


# ---- torch.library ops and the CUDA-graph driver ---------------------------------------------------------------


def _register_torch_ops():
    try:
        import torch
    except ImportError:
        return None, None
    # Explicit schemas: this module uses postponed annotations and imports torch lazily.

    def _stream(x) -> int:
        return int(torch.cuda.current_stream(x.device).cuda_stream) if x.is_cuda else 0

    @torch.library.custom_op("wallwm::flow_update", mutates_args=(),
                             schema="(Tensor x, Tensor v1, Tensor? v2, float w1, float w2, float dt, Tensor? prefix) -> Tensor")
    def flow_update_op(x: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor | None, w1: float, w2: float, dt: float,
                       prefix: torch.Tensor | None) -> torch.Tensor:
        """out = x + dt (w1 v1 + w2 v2), rows [0, P) := prefix. float32 (B, L, A)."""
        if not ext.has("flow_update"):
            out = x + dt * (w1 * v1 + (w2 * v2 if v2 is not None else 0))
            if prefix is not None and prefix.shape[1]:
                out[:, : prefix.shape[1]] = prefix
            return out
        c = lambda t: None if t is None else t.detach().contiguous()  # noqa: E731
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        ext.require("flow_update")(c(x), c(v1), c(v2), w1, w2, dt, c(prefix), out, _stream(x))
        return out

    @flow_update_op.register_fake
    def _(x, v1, v2, w1, w2, dt, prefix):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.custom_op("wallwm::unnormalize_clamp", mutates_args=(),
                             schema="(Tensor x, Tensor mean, Tensor std, Tensor? lo, Tensor? hi) -> Tensor")
    def unnormalize_clamp_op(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, lo: torch.Tensor | None,
                             hi: torch.Tensor | None) -> torch.Tensor:
        if not ext.has("unnormalize_clamp"):
            y = x * std + mean
            return y.clamp(min=lo, max=hi) if (lo is not None or hi is not None) else y
        c = lambda t: None if t is None else t.detach().contiguous()  # noqa: E731
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        ext.require("unnormalize_clamp")(c(x), c(mean), c(std), c(lo), c(hi), out, _stream(x))
        return out

    @unnormalize_clamp_op.register_fake
    def _(x, mean, std, lo, hi):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    return flow_update_op, unnormalize_clamp_op


flow_update_op, unnormalize_clamp_op = _register_torch_ops()


class CudaDenoiseGraph:
    """The whole K-step loop as one CUDA graph (torch network on a GPU).

    Capture once with static buffers, then `replay(x0, prefix)` per control step: one graph launch runs
    the K network calls and the fused updates with no per-step Python. Needs `_C` built with CUDA; the
    network must be capturable (no host syncs, static shapes). Untested here: no GPU on the dev machines.
    """

    def __init__(self, net: Callable, shape: tuple[int, int, int], ts, method: str, prefix_rows: int, mean, std,
                 lo=None, hi=None, device="cuda", warmup: int = 2):
        import torch

        if not ext.cuda_available():
            raise RuntimeError("CudaDenoiseGraph needs wallwm_edge._C built with CUDA and a GPU")
        if method not in METHODS:
            raise ValueError(f"method: must be 'euler' or 'heun', got {method!r}")
        f = lambda a: None if a is None else torch.as_tensor(np.asarray(a, np.float32), device=device)  # noqa: E731
        self.x0 = torch.zeros(shape, device=device)
        self.prefix = torch.zeros((shape[0], prefix_rows, shape[2]), device=device) if prefix_rows else None
        self.x, self.xp, self.v1 = (torch.zeros(shape, device=device) for _ in range(3))
        self.out = torch.zeros(shape, device=device)
        self.mean, self.std, self.lo, self.hi = f(mean), f(std), f(lo), f(hi)
        self.ts = [float(t) for t in np.asarray(ts, np.float64)]
        self.net, self.method = net, method
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm up (allocator, cuBLAS handles) outside the capture
            for _ in range(warmup):
                self._body(side)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._body(torch.cuda.current_stream(device))

    def _body(self, stream) -> None:
        up, fin = ext.require("flow_update"), ext.require("unnormalize_clamp")
        s = int(stream.cuda_stream)
        self.x.copy_(self.x0)
        if self.prefix is not None:
            self.x[:, : self.prefix.shape[1]].copy_(self.prefix)
        for k in range(len(self.ts) - 1):
            dt = self.ts[k + 1] - self.ts[k]
            self.v1.copy_(self.net(self.x, self.ts[k]))
            if self.method == "euler":
                up(self.x, self.v1, None, 1.0, 0.0, dt, self.prefix, self.x, s)
            else:
                up(self.x, self.v1, None, 1.0, 0.0, dt, self.prefix, self.xp, s)
                v2 = self.net(self.xp, self.ts[k + 1])
                up(self.x, self.v1, v2.contiguous(), 0.5, 0.5, dt, self.prefix, self.x, s)
        fin(self.x, self.mean, self.std, self.lo, self.hi, self.out, s)

    def replay(self, x0, prefix=None):
        """Copy inputs into the static buffers, launch the graph, return the (B, L, A) output buffer."""
        self.x0.copy_(x0)
        if self.prefix is not None:
            self.prefix.copy_(prefix)
        self.graph.replay()
        return self.out
