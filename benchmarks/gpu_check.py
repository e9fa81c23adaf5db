"""The GPU check: one command that, on a machine with a CUDA GPU, checks and measures everything the CPU
machines cannot, in under 8 minutes, and writes benchmarks/results/gpu_check.json.

    python benchmarks/gpu_check.py             # or: wallwm-edge bench gpu_check

Steps, each in its own process with its own timeout (the sum stays inside BUDGET_S, and every step is
cut to what is left of it):
  build        `pip install -e .` with WALLWM_CUDA=ON and WALLWM_CUDA_ARCHS set to this GPU's compute
               capability (the build knobs of pyproject.toml / CMakeLists.txt), so `_C` has kernels for it
  extension    `_C` imports from the build and sees the GPU (`ops.ext.cuda_available`)
  cuda_tests   `pytest -m cuda tests`: every cuda-marked test, each holding the CUDA kernel to the CPU /
               PyTorch reference; passes only if some ran and none failed
  attention    block-sparse attention (`_C` CUDA kernel) vs torch SDPA with the same sight-cone mask, on
               the GPU, float16 and bfloat16; error of each vs float32 SDPA
  denoise      the K-step loop as one CUDA graph (`ops.denoise.CudaDenoiseGraph`) vs the same loop in
               Python (torch ops on the GPU), Euler and Heun, same network
Without a CUDA GPU it prints one line and exits 2, writing nothing. No figure of this script has been
measured in this repository yet: the machines it was written on have no GPU.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULT_TAG = "GPU_CHECK_RESULT "  # a bench step's last stdout line: this tag, then its JSON
BUDGET_S = 465.0  # the whole check, detection included, stays under 8 minutes
TIMEOUTS_S = {"build": 210, "extension": 20, "cuda_tests": 110, "attention": 60, "denoise": 60}
HEADS, HEAD_DIM, BLOCK = 8, 64, 16  # as benchmarks/attention.py

EXAMPLES = """\
examples:
  python benchmarks/gpu_check.py                      build _C for this GPU, test, benchmark (< 8 min)
  python benchmarks/gpu_check.py --skip-build --quick use the installed _C; fewer repetitions
  wallwm-edge bench gpu_check --out /tmp/results      the same through the bench command

writes RESULTS/gpu_check.json (RESULTS: --out, else $WALLWM_BENCH_RESULTS, else ./benchmarks/results):
machine, GPU (name, compute capability, driver), and per step its status (ok, failed, timeout, skipped),
seconds and figures. Exit 0 when every step is ok, 1 otherwise, 2 when no CUDA GPU is found.
"""


# ---- the GPU ----------------------------------------------------------------------------------------------
def detect_gpu() -> dict | None:
    """{"name", "compute_capability" ("9.0"), "driver", "memory_mib", "source"} of GPU 0, or None."""
    query = "name,compute_cap,driver_version,memory.total"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            name, cc, driver, mem = (x.strip() for x in out.stdout.strip().splitlines()[0].split(","))
            return {"name": name, "compute_capability": cc, "driver": driver, "memory_mib": int(float(mem)), "source": "nvidia-smi"}
    except (OSError, subprocess.TimeoutExpired, ValueError):
        pass  # no driver tools, an old nvidia-smi without compute_cap: ask torch
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}", "driver": None,
                    "memory_mib": torch.cuda.get_device_properties(0).total_memory // 2**20, "source": "torch.cuda"}
    except Exception:  # noqa: BLE001 - a broken CUDA install is "no GPU" here
        pass
    return None


def cuda_arch(compute_capability: str) -> str:
    """"9.0" -> "90", the form WALLWM_CUDA_ARCHS / CMAKE_CUDA_ARCHITECTURES take."""
    major, _, minor = compute_capability.partition(".")
    return f"{int(major)}{int(minor or 0)}"


# ---- steps ------------------------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: float
    env: dict = field(default_factory=dict)  # added to the environment
    needs: str | None = None  # skipped unless this step is ok
    junit: Path | None = None  # pytest steps: counts come from this report


def plan_steps(arch: str, quick: bool, skip_build: bool, junit: Path) -> list[Step]:
    py, me = sys.executable, str(Path(__file__).resolve())
    steps = []
    if not skip_build:
        build = [py, "-m", "pip", "install", "-e", str(REPO), "-q", "--no-deps"]
        if _importable("scikit_build_core") and _importable("pybind11"):
            build.append("--no-build-isolation")  # no index needed when the build backend is already here
        steps.append(Step("build", build, TIMEOUTS_S["build"], {"WALLWM_CUDA": "ON", "WALLWM_CUDA_ARCHS": arch}))
    steps.append(Step("extension", [py, me, "--step", "extension"], TIMEOUTS_S["extension"]))
    steps.append(Step("cuda_tests", [py, "-m", "pytest", "-m", "cuda", str(REPO / "tests"), "-q", "-p", "no:cacheprovider",
                                     f"--junitxml={junit}"], TIMEOUTS_S["cuda_tests"], junit=junit))
    q = ["--quick"] if quick else []
    steps.append(Step("attention", [py, me, "--step", "attention", *q], TIMEOUTS_S["attention"], needs="extension"))
    steps.append(Step("denoise", [py, me, "--step", "denoise", *q], TIMEOUTS_S["denoise"], needs="extension"))
    return steps


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _tail(text: str, n: int = 1500) -> str:
    return text[-n:] if text else ""


def junit_counts(path: Path) -> dict:
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    n["ran"] = n["tests"] - n["skipped"]
    return n


def run_step(step: Step, deadline: float, done: dict) -> dict:
    """Run one step in its own process; its record: name, command, status, seconds, timeout_s, figures..."""
    rec = {"name": step.name, "command": " ".join(step.argv), "env": step.env}
    if step.needs and done.get(step.needs) != "ok":
        return {**rec, "status": "skipped", "why": f"step {step.needs!r} is {done.get(step.needs, 'not run')}"}
    timeout = min(step.timeout_s, deadline - time.monotonic())
    if timeout < 1:
        return {**rec, "status": "skipped", "why": "the check's time budget is spent"}
    rec["timeout_s"] = round(timeout, 1)
    t0 = time.monotonic()
    try:
        p = subprocess.run(step.argv, capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **step.env})
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return {**rec, "status": "timeout", "seconds": round(time.monotonic() - t0, 1), "tail": _tail(out)}
    rec.update(seconds=round(time.monotonic() - t0, 1), returncode=p.returncode)
    tagged = [ln for ln in p.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if tagged:
        rec.update(json.loads(tagged[-1][len(RESULT_TAG):]))
    status = "ok" if p.returncode == 0 else "failed"
    if step.junit is not None:
        try:
            rec["counts"] = junit_counts(step.junit)
            if rec["counts"]["ran"] == 0:
                status, rec["why"] = "failed", "every cuda-marked test was skipped (is _C built with CUDA?)"
        except (OSError, ET.ParseError, AttributeError):
            status = "failed"
    rec["status"] = status
    if status != "ok":
        rec["tail"] = _tail(p.stdout + "\n" + p.stderr)
    return rec


def run_steps(steps: list[Step], budget_s: float = BUDGET_S, started: float | None = None, log=print) -> list[dict]:
    deadline = (started if started is not None else time.monotonic()) + budget_s
    done: dict[str, str] = {}
    records = []
    for step in steps:
        log(f"[gpu_check] {step.name} (up to {min(step.timeout_s, max(0.0, deadline - time.monotonic())):.0f} s) ...")
        rec = run_step(step, deadline, done)
        done[step.name] = rec["status"]
        log(f"[gpu_check] {step.name}: {rec['status']}" + (f" in {rec['seconds']} s" if "seconds" in rec else "")
            + (f" ({rec['why']})" if rec.get("why") else ""))
        records.append(rec)
    return records


def write_record(path: Path, gpu: dict, arch: str, records: list[dict], total_s: float) -> Path:
    figures = {r["name"]: r["figures"] for r in records if "figures" in r}
    goals = {f"{r['name']}.{k}": v for r in records for k, v in r.get("goals", {}).items()}
    met = {f"{r['name']}.{k}": v for r in records for k, v in r.get("met", {}).items()}
    for r in records:  # kept once, in the record's goals / met
        r.pop("goals", None)
        r.pop("met", None)
    from wallwm_edge.bench import machine

    record = {"benchmark": "gpu_check", "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "machine": machine(),
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "gpu": gpu, "cuda_arch": arch,
              "total_s": round(total_s, 1), "budget_s": BUDGET_S, "steps": records, "figures": figures, "goals": goals, "met": met}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float) + "\n")
    os.replace(tmp, path)
    return path


# ---- the measuring steps (run in their own process: --step NAME) ------------------------------------------
def _best_median(ts: list[float]) -> tuple[float, float]:
    s = sorted(ts)
    return s[0], s[len(s) // 2]


def step_extension() -> dict:
    from wallwm_edge.ops import ext

    m = ext.module()
    ok = ext.cuda_available()
    if not ok:
        raise SystemExit(f"_C at {getattr(m, '__file__', None)} has no CUDA kernels or sees no GPU")
    return {"figures": {"module": m.__file__, "cuda_devices": m.cuda_device_count()}}


def step_attention(quick: bool) -> dict:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(HERE))
    from _ops_rigs import FOUR_CAMERAS, METAWORLD3, metaworld_rig

    from wallwm_edge.ops.attention import block_sparse_attention
    from wallwm_edge.ops.sightcone import block_mask, density, sightcone_mask

    reps = 20 if quick else 100
    figures, goals, met = {"heads": HEADS, "head_dim": HEAD_DIM, "block": BLOCK, "reps": reps}, {}, {}
    for key, views in (("metaworld3", METAWORLD3), ("cameras4", FOUR_CAMERAS)):
        cams, ws, source = metaworld_rig(views)
        mask = sightcone_mask(cams, 8, 0.05, 2.0, ws)
        tm, tbm = torch.from_numpy(mask).cuda(), torch.from_numpy(block_mask(mask, BLOCK)).cuda()
        rows = tm.any(1)  # SDPA gives NaN on a row with no allowed key, the kernel zeros: compare the others
        dens = density(mask)
        fig = {"views": list(views), "rig": source, "tokens": len(mask), "density": round(dens, 4)}
        g = torch.Generator().manual_seed(0)
        q32, k32, v32 = (torch.randn(1, HEADS, len(mask), HEAD_DIM, generator=g).cuda() for _ in range(3))
        ref = F.scaled_dot_product_attention(q32, k32, v32, attn_mask=tm)
        for dtype in (torch.float16, torch.bfloat16):
            q, k, v = (t.to(dtype) for t in (q32, k32, v32))
            out = torch.empty_like(q)
            sdpa = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=tm)  # noqa: E731
            ours = lambda: block_sparse_attention(q, k, v, tm, tbm, BLOCK, out=out)  # noqa: E731
            for _ in range(3):
                sdpa(), ours()
            torch.cuda.synchronize()
            ts, tk = [], []
            for _ in range(reps):  # interleaved, so a neighbour's load hits both alike
                e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
                e0.record()
                base = sdpa()
                e1.record()
                ours()
                e2.record()
                torch.cuda.synchronize()
                ts.append(e0.elapsed_time(e1))
                tk.append(e1.elapsed_time(e2))
            err_ours = float((out.float() - ref)[:, :, rows].abs().max())
            err_sdpa = float((base.float() - ref)[:, :, rows].abs().max())
            (bs, ms), (bk, mk) = _best_median(ts), _best_median(tk)
            tag = str(dtype).removeprefix("torch.")
            fig[tag] = {"sdpa_best_ms": round(bs, 4), "block_sparse_best_ms": round(bk, 4), "sdpa_median_ms": round(ms, 4),
                        "block_sparse_median_ms": round(mk, 4), "speedup": round(bs / bk, 2),
                        "max_abs_err_vs_fp32_sdpa": err_ours, "sdpa_max_abs_err_vs_fp32_sdpa": err_sdpa}
            goals[f"{key}_{tag}_speedup"] = round(0.8 / dens, 2)  # the CPU benchmark's goal, same form
            met[f"{key}_{tag}_speedup"] = bool(bs / bk >= 0.8 / dens)
            goals[f"{key}_{tag}_error_vs_sdpa_error"] = 2.0  # the kernel tests' rule: at most 2x PyTorch's error
            met[f"{key}_{tag}_error_vs_sdpa_error"] = bool(err_ours <= 2.0 * max(err_sdpa, 1e-6))
        figures[key] = fig
    return {"figures": figures, "goals": goals, "met": met}


def step_denoise(quick: bool) -> dict:
    import torch

    from wallwm_edge.ops.denoise import CudaDenoiseGraph, flow_schedule

    sys.path.insert(0, str(HERE))
    from denoise_loop import HIDDEN, A, B, K, L, P, mlp_velocity, python_loop  # the CPU benchmark's network and baseline

    reps = 30 if quick else 200
    dev = "cuda"
    net = mlp_velocity(dev)
    g = torch.Generator().manual_seed(0)
    x0, prefix = torch.randn(B, L, A, generator=g).to(dev), torch.randn(B, P, A, generator=g).to(dev)
    mean, std = torch.full((A,), 0.1, device=dev), torch.full((A,), 0.5, device=dev)
    lo, hi = torch.full((A,), -1.0, device=dev), torch.full((A,), 1.0, device=dev)
    ts = flow_schedule(K)

    def baseline(method):
        return python_loop(net, x0, prefix, ts, method, mean, std, lo, hi)

    figures = {"batch": B, "chunk": L, "action_dim": A, "prefix_rows": P, "steps": K, "hidden": HIDDEN, "reps": reps}
    goals, met = {}, {}
    with torch.no_grad():
        for method in ("euler", "heun"):
            graph = CudaDenoiseGraph(net, (B, L, A), ts, method, P, mean.cpu().numpy(), std.cpu().numpy(), lo.cpu().numpy(),
                                     hi.cpu().numpy(), device=dev)
            fns = {"python_loop": lambda: baseline(method), "cuda_graph": lambda: graph.replay(x0, prefix)}
            for f in fns.values():
                f()
            torch.cuda.synchronize()
            times = {n: [] for n in fns}
            for _ in range(reps):  # wall clock to the result, what a control step waits for
                for n, f in fns.items():
                    t = time.perf_counter()
                    f()
                    torch.cuda.synchronize()
                    times[n].append((time.perf_counter() - t) * 1e3)
            diff = float((baseline(method) - graph.replay(x0, prefix)).abs().max())
            (bp, mp), (bg, mg) = _best_median(times["python_loop"]), _best_median(times["cuda_graph"])
            figures[method] = {"python_loop_best_ms": round(bp, 4), "cuda_graph_best_ms": round(bg, 4),
                               "python_loop_median_ms": round(mp, 4), "cuda_graph_median_ms": round(mg, 4),
                               "speedup": round(bp / bg, 2), "max_abs_diff": diff}
            goals[f"{method}_speedup"] = 1.0
            met[f"{method}_speedup"] = bool(bp / bg >= 1.0 and diff < 1e-4)
    return {"figures": figures, "goals": goals, "met": met}


# ---- the command ------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer benchmark repetitions (same figures)")
    ap.add_argument("--skip-build", action="store_true", help="use the installed _C instead of building it for this GPU")
    ap.add_argument("--out", default=None, metavar="DIR", help="folder for gpu_check.json (default: see below)")
    ap.add_argument("--step", choices=["extension", "attention", "denoise"], help=argparse.SUPPRESS)  # one step, in its own process
    args = ap.parse_args(argv)
    if args.step:
        rec = {"extension": step_extension, "attention": lambda: step_attention(args.quick),
               "denoise": lambda: step_denoise(args.quick)}[args.step]()
        print(RESULT_TAG + json.dumps(rec, default=float))
        return 0
    started = time.monotonic()
    gpu = detect_gpu()
    if gpu is None:
        print("gpu_check: no CUDA GPU found (nvidia-smi and torch.cuda see none); nothing was built or written", file=sys.stderr)
        return 2
    arch = cuda_arch(gpu["compute_capability"])
    print(f"[gpu_check] {gpu['name']}, compute capability {gpu['compute_capability']} (sm_{arch}), driver {gpu['driver']}")
    from wallwm_edge.bench import resolve_results_dir

    out = resolve_results_dir(args.out) / "gpu_check.json"
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        records = run_steps(plan_steps(arch, args.quick, args.skip_build, tmp / "cuda_tests.xml"), BUDGET_S, started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = write_record(out, gpu, arch, records, time.monotonic() - started)
    bad = [r["name"] for r in records if r["status"] != "ok"]
    print(f"wrote {path}" + (f"; not ok: {', '.join(bad)}" if bad else "; every step ok"))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
