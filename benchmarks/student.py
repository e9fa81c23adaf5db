"""Teacher vs distilled student vs its ONNX Runtime float32 / int8 exports: latency per chunk and
closed-loop Task Progress in Meta-World on the same seeds, side by side in one run.

Variants (all on CPU, one thread each, batch 1, so they share the machine the same way):
    teacher_eager   the full checkpoint, torch, its own flow steps (10)
    student_eager   the distilled student, torch, its steps (1-2)
    student_ort     student.sample.onnx (fp32) in onnxruntime: one call per chunk
    student_int8    student.sample.int8.onnx (QDQ, action boundary float) in onnxruntime

Latency: one chunk (prepare + all flow steps) on a real observation from the evaluation env, timed
interleaved (teacher, student, ort, int8, teacher, ...) so load on the shared machine hits every variant
alike; medians reported, ratios from the medians.
Task Progress: wallwm_edge.eval.closed_loop.evaluate with the same EvalConfig (splits, tasks, episodes,
scene seeds) for every variant; the ONNX variants act through the torch-free runtime's Student.
Goals (issue 5): int8 >= 10x faster per chunk than the teacher, its Task Progress within 3 points of the
teacher's; ONNX Runtime >= 1.5x faster than eager for the same student.

    python benchmarks/student.py [--quick] [--teacher PATH] [--student DIR] [--episodes N] [--splits a,b]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from wallwm_edge.bench import REPO_ROOT, write_result


class OrtActor:
    """The eval harness's actor interface over the torch-free runtime Student (ONNX + sidecar)."""

    name = "onnx"
    needs_images = True

    def __init__(self, onnx_path: Path, seed: int = 0):
        from wallwm_edge.calibration.rig import Rig
        from wallwm_edge.runtime.engine import Student
        from wallwm_edge.runtime.masks import MaskProvider

        self.student = Student.load(onnx_path, threads=1, seed=seed)
        meta = self.student.meta
        self.mode, self.views = meta.get("mode", "event"), tuple(meta["views"])
        self.image_size, self.action_dim = tuple(meta["image_size"]), int(meta["action_dim"])
        cfg = meta["config"]
        self.masks = MaskProvider(Rig.from_json(meta["rig"]), self.views, cfg["patch"], cfg["near"], cfg["far"], self.image_size)

    def reset(self, env, tracker, seed: int = 0) -> None:
        self.student.rng = np.random.default_rng(seed)  # paired: the noise restarts per episode, as for the torch actors

    def act(self, obs: dict, instruction: str):
        """(actions (L, A), end_prob (L,)): the closed loop applies the one end-of-event rule."""
        mask = self.masks.view_mask(np.asarray(obs["cam_poses"]))
        out = self.student.act(obs["images"], obs["proprio"], instruction, mask)
        return out.actions, out.end_prob


def newest_teacher() -> Path | None:
    """checkpoints/teacher if committed, else the newest runs/*/model.safetensors of a teacher preset."""
    fixed = REPO_ROOT / "checkpoints" / "teacher" / "model.safetensors"
    if fixed.is_file():
        return fixed.parent
    import json

    from safetensors import safe_open

    found = []
    for p in (REPO_ROOT / "runs").glob("*/model.safetensors"):
        try:
            with safe_open(str(p), framework="pt") as f:
                cfg = json.loads(f.metadata()["wallwm"])["config"]
            if cfg["name"] == "teacher":
                found.append((p.stat().st_mtime, p.parent))
        except Exception:
            continue
    return max(found)[1] if found else None


def chunk_latency(fns: dict, reps: int) -> dict[str, float]:
    """Median seconds per call of each fn, interleaved round-robin after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main(argv=None) -> int:
    import torch

    from wallwm_edge.eval.actors import CheckpointActor
    from wallwm_edge.eval.closed_loop import EvalConfig, evaluate
    from wallwm_edge.eval.report import summarize

    ap = argparse.ArgumentParser(description="teacher vs student (eager, ONNX Runtime fp32/int8): latency and Task Progress")
    ap.add_argument("--quick", action="store_true", help="fewer reps, seen split only, 1 episode per task")
    ap.add_argument("--teacher", default=None, help="teacher checkpoint (default checkpoints/teacher, else the newest runs/* teacher)")
    ap.add_argument("--student", default=str(REPO_ROOT / "checkpoints" / "student"), help="student folder: model.safetensors + student.sample*.onnx")
    ap.add_argument("--episodes", type=int, default=None, help="episodes per task and split (default 5, quick 1)")
    ap.add_argument("--splits", default=None, help="comma list (default: all four splits; quick: seen)")
    ap.add_argument("--tasks", default=None, help="comma list of tasks (default: every task of each split)")
    ap.add_argument("--reps", type=int, default=None, help="latency reps per variant (default 30, quick 8)")
    ap.add_argument("--no-eval", action="store_true", help="latency only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    teacher_path = Path(args.teacher) if args.teacher else newest_teacher()
    student_dir = Path(args.student)
    if teacher_path is None:
        print("no teacher checkpoint: pass --teacher (checkpoints/teacher or a runs/* teacher)")
        return 1
    onnx = {"student_ort": student_dir / "student.sample.onnx", "student_int8": student_dir / "student.sample.int8.onnx"}
    missing = [str(p) for p in onnx.values() if not p.is_file()]
    if missing:
        print(f"missing exports {missing}: run `wallwm-edge export {student_dir} --out {student_dir} --data DATA --precisions fp32,int8`")
        return 1
    actors = {
        "teacher_eager": CheckpointActor(teacher_path, seed=0),
        "student_eager": CheckpointActor(student_dir, seed=0),
        "student_ort": OrtActor(onnx["student_ort"], seed=0),
        "student_int8": OrtActor(onnx["student_int8"], seed=0),
    }
    views, image_size = actors["student_eager"].views, actors["student_eager"].image_size

    # ---- latency per chunk, on a real rendered observation
    from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

    env = MetaWorldEnv(SimConfig(task="pick-place-v3", views=tuple(views), image_size=tuple(image_size)))
    obs = env.reset(0)
    env.close()
    text = "grasp the puck"
    for a in actors.values():
        a.reset(None, None, 0)
    fns = {name: (lambda a=a: a.act(obs, text)) for name, a in actors.items()}
    reps = args.reps or (8 if args.quick else 30)
    lat = chunk_latency(fns, reps)
    figures = {f"{k}_ms_per_chunk": round(v * 1e3, 3) for k, v in lat.items()}
    figures["int8_speedup_vs_teacher"] = round(lat["teacher_eager"] / lat["student_int8"], 2)
    figures["ort_speedup_vs_eager_student"] = round(lat["student_eager"] / lat["student_ort"], 2)
    figures["int8_speedup_vs_ort_fp32"] = round(lat["student_ort"] / lat["student_int8"], 2)
    figures["student_eager_speedup_vs_teacher"] = round(lat["teacher_eager"] / lat["student_eager"], 2)
    figures["teacher_steps"] = actors["teacher_eager"].policy.steps
    figures["student_steps"] = actors["student_eager"].policy.steps
    figures["teacher_params_M"] = round(sum(p.numel() for p in actors["teacher_eager"].policy.model.parameters()) / 1e6, 3)
    figures["student_params_M"] = round(sum(p.numel() for p in actors["student_eager"].policy.model.parameters()) / 1e6, 3)
    for k, p in onnx.items():
        figures[f"{k}_onnx_mb"] = round(p.stat().st_size / 1e6, 3)
    figures["latency_reps"] = reps
    figures["teacher_checkpoint"] = str(teacher_path)

    goals = {"int8_speedup_vs_teacher": ">= 10", "ort_speedup_vs_eager_student": ">= 1.5",
             "int8_task_progress_gap_vs_teacher": "<= 3 points"}
    met = {"int8_speedup_vs_teacher": figures["int8_speedup_vs_teacher"] >= 10,
           "ort_speedup_vs_eager_student": figures["ort_speedup_vs_eager_student"] >= 1.5}

    # ---- closed-loop Task Progress, same seeds for every variant
    if not args.no_eval:
        splits = tuple((args.splits or ("seen" if args.quick else "seen,novel_scene,heldout_paraphrase,heldout_task")).split(","))
        tasks = tuple(args.tasks.split(",")) if args.tasks else None
        cfg = EvalConfig(splits=splits, tasks=tasks, episodes=args.episodes or (1 if args.quick else 5),
                         views=tuple(views), image_size=tuple(image_size))
        for name, actor in actors.items():
            t0 = time.perf_counter()
            summary = summarize(evaluate(actor, cfg, progress=True))
            tp = [summary[s]["task_progress"] for s in splits if s in summary]
            figures[f"{name}_task_progress"] = round(float(np.mean(tp)), 2)
            for s in splits:
                if s in summary:
                    figures[f"{name}_task_progress_{s}"] = round(summary[s]["task_progress"], 2)
                    figures[f"{name}_success_rate_{s}"] = round(summary[s]["success_rate"], 2)
            figures[f"{name}_eval_s"] = round(time.perf_counter() - t0, 1)
        gap = figures["teacher_eager_task_progress"] - figures["student_int8_task_progress"]
        figures["int8_task_progress_gap_vs_teacher"] = round(gap, 2)
        figures["eval"] = {"splits": list(splits), "tasks": list(tasks) if tasks else "all", "episodes_per_task": cfg.episodes}
        met["int8_task_progress_gap_vs_teacher"] = gap <= 3.0
    write_result("student", figures, goals, met)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
