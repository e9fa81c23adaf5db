"""Block-sparse attention (the `_C` CPU kernel) vs torch SDPA with the same dense boolean mask.

The masks are the sight-cone masks of Meta-World rigs (96 px images, 8 px patches, near 0.05 m, far 2 m,
the sim's workspace box): the sim's 3 default views and a 4-camera rig. Batch 1, 8 heads, head dim 64,
float32. The kernel gets the mask's block mask (16-token blocks) and row order (attention_row_order),
both computed once per rig like the mask itself, outside the timing. Goal per rig: speedup >= 0.8 / density (density = allowed fraction of the mask).

The two are timed interleaved (one SDPA call, one kernel call, repeated) so load from other processes on a
shared machine hits both alike, with all cores and with one thread. Wall clock: the speedup is the ratio of
the best times (timeit's advice on a busy machine), medians beside it. With one thread both run on the
calling thread, so its CPU time (time.thread_time) is also reported: it does not count time the thread was
descheduled, which makes it the steadiest figure on a loaded machine.

`--isa avx2|avx512|sse2|neon` runs the kernel's path for that instruction set (default: the widest this CPU
runs; `_C.attention_cpu_path`) and, for a like-for-like baseline, caps torch at the same ISA where torch has
a switch (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS, set before torch is imported).
The figures record the kernel's path and torch's CPU capability beside the machine's ISA.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# torch's own ISA caps, per kernel path (only the x86 ones have switches); they must be set before torch loads,
# which the imports below do, hence the early look at --isa.
TORCH_ISA_ENV = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
                 "sse2": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}}


def _cap_torch_isa(argv) -> dict:
    isa = next((a.split("=", 1)[1] for a in argv if a.startswith("--isa=")), None)
    if isa is None and "--isa" in argv[:-1]:
        isa = argv[argv.index("--isa") + 1]
    if isa not in TORCH_ISA_ENV or "torch" in sys.modules:
        return {}
    os.environ.update(TORCH_ISA_ENV[isa])
    return TORCH_ISA_ENV[isa]


_TORCH_ENV = _cap_torch_isa(sys.argv[1:])

import numpy as np  # noqa: E402

from _ops_rigs import FOUR_CAMERAS, METAWORLD3, metaworld_rig  # noqa: E402
from wallwm_edge.bench import write_result  # noqa: E402
from wallwm_edge.ops import ext  # noqa: E402
from wallwm_edge.ops.attention import attention_row_order  # noqa: E402
from wallwm_edge.ops.sightcone import block_mask, density, sightcone_mask  # noqa: E402

HEADS, HEAD_DIM, BLOCK = 8, 64, 16


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="block-sparse attention vs SDPA with the same mask")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--isa", default="auto", help="kernel path: auto (widest this CPU runs), avx512, avx2, sse2, neon")
    args = ap.parse_args(argv)
    torch_env = _TORCH_ENV if argv is None else _cap_torch_isa(argv)
    if args.isa in TORCH_ISA_ENV and not torch_env:
        print(f"note: torch was loaded before --isa {args.isa} was seen: SDPA runs at torch's default ISA")
    import torch

    if not ext.has("attention_forward"):
        print("wallwm_edge._C is not built: nothing to compare")
        return 1
    C = ext.module()
    path, lanes = C.attention_cpu_path(args.isa) if hasattr(C, "attention_cpu_path") else ("avx512 (fixed)", 16)
    reps = 15 if args.quick else 60
    all_threads = torch.get_num_threads()
    figures, goals, met = {"threads": all_threads, "heads": HEADS, "head_dim": HEAD_DIM, "block": BLOCK}, {}, {}
    figures["kernel_isa_path"] = f"{path} ({lanes} query rows per tile)"
    figures["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    figures["torch_isa_env"] = torch_env
    print(f"kernel path {figures['kernel_isa_path']}; torch CPU capability {figures['torch_cpu_capability']}")
    for key, views in (("metaworld3", METAWORLD3), ("cameras4", FOUR_CAMERAS)):
        cams, ws, source = metaworld_rig(views)
        mask = sightcone_mask(cams, 8, 0.05, 2.0, ws)
        N = len(mask)
        bm = block_mask(mask, BLOCK)
        order = attention_row_order(mask, lanes)
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, HEADS, N, HEAD_DIM, generator=g) for _ in range(3))
        tmask = torch.from_numpy(mask)
        out = torch.empty_like(q)
        qn, kn, vn, on = q.numpy(), k.numpy(), v.numpy(), out.numpy()
        scale = HEAD_DIM**-0.5
        sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=tmask)  # noqa: E731
        ours = lambda: C.attention_forward(qn, kn, vn, mask, bm, BLOCK, scale, on, 0, order)  # noqa: E731
        dens = density(mask)
        tiles = [order[i:i + lanes] for i in range(0, N, lanes)]
        work = sum(len(t) * int(mask[t].any(0).sum()) for t in tiles) / N**2  # fraction of scores computed
        fig = {"views": list(views), "rig": source, "tokens": N, "density": round(dens, 4), "block_density": round(density(bm), 4),
               "computed_fraction": round(work, 4)}
        for threads in (all_threads, 1):
            torch.set_num_threads(threads)
            C.set_num_threads(threads)
            sdpa(), ours()  # warm up
            ts, tk, cs, ck = [], [], [], []
            for _ in range(reps):
                t, c = time.perf_counter(), time.thread_time()
                ref = sdpa()
                ts.append(time.perf_counter() - t)
                cs.append(time.thread_time() - c)
                t, c = time.perf_counter(), time.thread_time()
                ours()
                tk.append(time.perf_counter() - t)
                ck.append(time.thread_time() - c)
            rows = torch.from_numpy(mask.any(1))
            diff = float((out - ref)[:, :, rows].abs().max())
            tag = f"{threads}_threads"
            fig[tag] = {"sdpa_best_ms": round(min(ts) * 1e3, 3), "block_sparse_best_ms": round(min(tk) * 1e3, 3),
                        "sdpa_median_ms": round(float(np.median(ts)) * 1e3, 3),
                        "block_sparse_median_ms": round(float(np.median(tk)) * 1e3, 3),
                        "speedup": round(min(ts) / min(tk), 2), "speedup_of_medians": round(float(np.median(ts) / np.median(tk)), 2),
                        "max_abs_diff_vs_sdpa": diff}
            goals[f"{key}_speedup_{tag}"] = round(0.8 / dens, 2)
            met[f"{key}_speedup_{tag}"] = bool(min(ts) / min(tk) >= 0.8 / dens and diff < 1e-4)
            if threads == 1:
                cpu = float(np.median(cs) / np.median(ck))
                fig[tag].update({"sdpa_cpu_median_ms": round(float(np.median(cs)) * 1e3, 3),
                                 "block_sparse_cpu_median_ms": round(float(np.median(ck)) * 1e3, 3), "speedup_cpu_time": round(cpu, 2)})
                goals[f"{key}_speedup_cpu_time_1_thread"] = round(0.8 / dens, 2)
                met[f"{key}_speedup_cpu_time_1_thread"] = bool(cpu >= 0.8 / dens and diff < 1e-4)
        figures[key] = fig
    # A forced path (e.g. the AVX2 path on an AVX-512 machine) gets its own file: attention_avx2.json.
    write_result("attention" if args.isa == "auto" else f"attention_{path}", figures, goals, met)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
