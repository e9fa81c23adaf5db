"""End-to-end control-loop figures on this CPU: the demo's loop with asynchronous inference vs a synchronous baseline.

Both runs are the real `wallwm-edge run` loop (wallwm_edge.runtime.loop) on the simulated Meta-World rig,
through the simulated firmware on a pty, at the demo's control rate, in this one process:
- async (the product): the next chunk is computed while the current one plays;
- sync (the baseline): capture + inference start only once the firmware has played everything.
A control step is "served on time" when the firmware had a point to play at that step (sampled from
its STATE each step, from the first chunk until no further chunk will come).

Figures: chunk inference p50/p99 (student engine only, in the loop and in isolation), the other stage
latencies, the share of control steps served on time for both, and their ratio. Goal: every control
step on time with asynchronous inference.

    python benchmarks/control_loop.py [--quick] [--student PATH]     (or: wallwm-edge bench control_loop)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _plan(path: Path, task: str) -> Path:
    from wallwm_edge.events.vocab import subtask_keys

    path.write_text(json.dumps({task: subtask_keys(task) * 6}))
    return path


def isolated_inference(student_path: str, n: int) -> list[float]:
    """Student engine calls back to back on one rendered observation (no control loop around it)."""
    from wallwm_edge.runtime.engine import Student
    from wallwm_edge.runtime.masks import MaskProvider
    from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

    st = Student.load(student_path, threads=1)
    with MetaWorldEnv(SimConfig(views=st.views, image_size=st.image_size)) as env:
        obs = env.reset(0)
        vm = MaskProvider(env.rig, st.views, st.patch, st.near, st.far, st.image_size).view_mask(obs["cam_poses"])
    caption = next(iter(st.captions))
    st.act(obs["images"], obs["proprio"], caption, vm)  # warm-up
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        st.act(obs["images"], obs["proprio"], caption, vm)
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    from wallwm_edge.bench import write_result
    from wallwm_edge.runtime.loop import RunConfig, default_student, run
    from wallwm_edge.runtime.report import percentiles

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer chunks and calls (same figures)")
    ap.add_argument("--student", default="", help="exported student (default: the shipped one, checkpoints/student)")
    ap.add_argument("--rate", type=float, default=20.0, help="control rate in Hz (default: the demo's, 20)")
    ap.add_argument("--task", default="pick-place-v3")
    args = ap.parse_args(argv)
    student = args.student or str(default_student())
    chunks = 12 if args.quick else 40
    calls = 30 if args.quick else 200

    runs = {}
    with tempfile.TemporaryDirectory(prefix="wallwm-bench-") as tmp:
        plan = _plan(Path(tmp) / "plan.json", args.task)
        for mode in ("async", "sync"):
            cfg = RunConfig(student=student, task=args.task, plan=str(plan), rate_hz=args.rate, max_chunks=chunks,
                            max_steps=100000, event_cap=40, sync=mode == "sync", out=str(Path(tmp) / mode), gif=False, status=False)
            t0 = time.perf_counter()
            res = run(cfg)
            runs[mode] = res.report
            print(f"{mode}: {res.reason}, {res.report['counters']['chunks']} chunks, on time "
                  f"{res.report['on_time']['served']}/{res.report['on_time']['steps']} in {time.perf_counter() - t0:.1f} s", flush=True)
    iso = percentiles(isolated_inference(student, calls))
    a, s = runs["async"], runs["sync"]
    share_a, share_s = a["on_time"]["share"], s["on_time"]["share"]
    figures = {
        "student": a["student"],
        "student_path": student,
        "rtc": a["rtc"],
        "rate_hz": args.rate,
        "chunks_per_run": chunks,
        "chunk_inference_isolated_ms": {"p50": iso["p50_ms"], "p99": iso["p99_ms"], "n": iso["n"]},
        "chunk_inference_in_loop_ms": {"p50": a["latency"]["inference"]["p50_ms"], "p99": a["latency"]["inference"]["p99_ms"],
                                       "n": a["latency"]["inference"]["n"]},
        "stage_latency_async_ms": {k: {"p50": v["p50_ms"], "p99": v["p99_ms"]} for k, v in a["latency"].items()},
        "on_time_share_async": share_a,
        "on_time_share_sync": share_s,
        "on_time_steps_async": [a["on_time"]["served"], a["on_time"]["steps"]],
        "on_time_steps_sync": [s["on_time"]["served"], s["on_time"]["steps"]],
        "late_steps_ratio_sync_over_async": round((s["on_time"]["steps"] - s["on_time"]["served"]) /
                                                   max(1, a["on_time"]["steps"] - a["on_time"]["served"]), 2),
        "underrun_steps": {"async": a["counters"]["underrun_steps"], "sync": s["counters"]["underrun_steps"]},
        "host_stalls_ticks": {"async": a["counters"]["late_ticks"], "sync": s["counters"]["late_ticks"]},
    }
    goals = {"on_time_share_async": "== 1.0 (every control step served at the demo's rate with async inference)"}
    met = {"on_time_share_async": share_a is not None and share_a >= 1.0}
    write_result("control_loop", figures, goals, met)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
