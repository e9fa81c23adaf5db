"""The fused denoising loop (`_C.denoise_loop`) vs the same loop written in Python, for the same network.

Network: a small torch MLP velocity field on an action chunk (B=1, L=16, A=4, hidden 256, 3 layers, time
as an input), K = 10 steps, prefix of P = 4 frozen rows, unnormalize + clamp at the end; Euler and Heun.
Baseline: the loop in PyTorch (update, freeze, unnormalize, clamp as tensor ops). Fused: the C++ loop
calling the same network back once per (sub)step (DenoiseLoop + torch_velocity: numpy <-> torch
without copies). Also timed: the K
network calls alone. The loop overhead itself is measured with a null network (returns a fixed tensor),
per step. Timed interleaved; figures from the best of N runs (shared machine), medians beside them.
Goals: the fused loop is not slower with the MLP, and its per-step overhead is at least 2x smaller.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from wallwm_edge.bench import write_result
from wallwm_edge.ops import ext
from wallwm_edge.ops.denoise import DenoiseLoop, flow_schedule, torch_velocity

B, L, A, P, K, HIDDEN = 1, 16, 4, 4, 10, 256


def mlp_velocity(device: str = "cpu"):
    """The benchmark's network (seeded): a 3-layer MLP velocity field, time as an input; (B, L, A), t -> (B, L, A)."""
    import torch

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(A + 1, HIDDEN), torch.nn.GELU(), torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.GELU(),
                              torch.nn.Linear(HIDDEN, A)).to(device).eval()

    def net(x, t: float):
        return mlp(torch.cat([x, torch.full((*x.shape[:2], 1), t, device=x.device)], -1))

    return net


def python_loop(net, x0, prefix, ts, method: str, mean, std, lo, hi):
    """The baseline: the loop written in PyTorch (update, freeze the prefix rows, unnormalize, clamp as tensor
    ops), on whatever device the tensors are on (gpu_check.py times it on the GPU)."""
    import torch

    P = prefix.shape[1]
    x = x0.clone()
    x[:, :P] = prefix
    for k in range(len(ts) - 1):
        dt = float(ts[k + 1] - ts[k])
        v1 = net(x, float(ts[k]))
        if method == "euler":
            x = x + dt * v1
        else:
            xp = x + dt * v1
            xp[:, :P] = prefix
            x = x + dt * 0.5 * (v1 + net(xp, float(ts[k + 1])))
        x[:, :P] = prefix
    return torch.clamp(x * std + mean, lo, hi)


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description="fused denoising loop vs a Python loop")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if not ext.has("denoise_loop"):
        print("wallwm_edge._C is not built: nothing to compare")
        return 1
    reps = 30 if args.quick else 200
    mlp_net = mlp_velocity()
    fixed_v = torch.randn(B, L, A)
    null_net = lambda x, t: fixed_v  # noqa: E731  the loop's own cost only
    net = mlp_net

    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((B, L, A)).astype(np.float32)
    prefix = rng.standard_normal((B, P, A)).astype(np.float32)
    mean, std = np.zeros(A, np.float32) + 0.1, np.full(A, 0.5, np.float32)
    lo, hi = np.full(A, -1.0, np.float32), np.full(A, 1.0, np.float32)
    ts = flow_schedule(K)
    T = {n: torch.from_numpy(a) for n, a in dict(x0=x0, prefix=prefix, mean=mean, std=std, lo=lo, hi=hi).items()}

    def baseline(method):  # `net` is read at call time: the null network first, then the MLP
        return python_loop(net, T["x0"], T["prefix"], ts, method, T["mean"], T["std"], T["lo"], T["hi"]).numpy()

    loops = {}

    def fused(method):
        if (method, net) not in loops:
            loops[method, net] = DenoiseLoop(torch_velocity(net), ts, method, mean, std, lo, hi)
        return loops[method, net](x0, prefix)

    def network_only(method):
        x = T["x0"]
        for k in range(K * (2 if method == "heun" else 1)):
            net(x, 0.5)

    figures, goals, met = {"batch": B, "chunk": L, "action_dim": A, "prefix_rows": P, "steps": K, "hidden": HIDDEN}, {}, {}
    with torch.inference_mode():
        net = null_net
        for method in ("euler", "heun"):
            calls = K * (2 if method == "heun" else 1)
            tp, tf = [], []
            for _ in range(reps * 3):
                t = time.perf_counter()
                baseline(method)
                tp.append(time.perf_counter() - t)
                t = time.perf_counter()
                fused(method)
                tf.append(time.perf_counter() - t)
            figures[f"{method}_null_network"] = {"python_loop_us_per_step": round(min(tp) / calls * 1e6, 2),
                                                 "fused_us_per_step": round(min(tf) / calls * 1e6, 2),
                                                 "overhead_ratio": round(min(tp) / min(tf), 2)}
            goals[f"{method}_overhead_ratio"] = 2.0
            met[f"{method}_overhead_ratio"] = bool(min(tp) / min(tf) >= 2.0)
        net = mlp_net
        for method in ("euler", "heun"):
            fns = {"python_loop": baseline, "fused": fused, "network_only": network_only}
            times = {n: [] for n in fns}
            for f in fns.values():
                f(method)  # warm up
            for _ in range(reps):
                for n, f in fns.items():
                    t = time.perf_counter()
                    f(method)
                    times[n].append(time.perf_counter() - t)
            best = {n: min(v) * 1e3 for n, v in times.items()}
            med = {n: float(np.median(v)) * 1e3 for n, v in times.items()}
            diff = float(np.abs(baseline(method) - fused(method)).max())
            figures[method] = {
                "python_loop_best_ms": round(best["python_loop"], 3), "fused_best_ms": round(best["fused"], 3),
                "network_only_best_ms": round(best["network_only"], 3),
                "python_loop_median_ms": round(med["python_loop"], 3), "fused_median_ms": round(med["fused"], 3),
                "speedup": round(best["python_loop"] / best["fused"], 3),
                "loop_overhead_python_ms": round(best["python_loop"] - best["network_only"], 3),
                "loop_overhead_fused_ms": round(best["fused"] - best["network_only"], 3),
                "max_abs_diff": diff,
            }
            goals[f"{method}_speedup"] = 1.0
            met[f"{method}_speedup"] = bool(best["python_loop"] / best["fused"] >= 1.0 and diff < 1e-5)
    write_result("denoise_loop", figures, goals, met)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
