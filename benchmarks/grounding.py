"""Does the policy look where things are? Open-loop scene grounding of a checkpoint's first chunk.

A policy can score Task Progress on tasks whose objects barely move between scenes (buttons, drawers)
by replaying each task's mean path from the proprio alone. This benchmark asks directly whether the
actions depend on WHERE the object or goal is. For each seen task and N unseen scenes it resets the
scene, asks the checkpoint for its first chunk (the plan's first event, captioned) and compares the
mean xyz direction of its first `--steps` actions with the scripted expert's over its first `--steps`
steps from the same state:

- cos_policy   mean cosine(policy direction, expert direction) over scenes
- cos_blind    the same for a BLIND reference: the task's mean expert direction over these scenes (what a
               policy that knows the task but not the scene can reach at best, roughly)
- corr         per axis where the expert's direction varies across scenes (std > 0.1), the correlation
               across scenes between the policy's and the expert's component; averaged. ~0 = the policy's
               first move ignores where the target is; 1 = it follows it.

    python benchmarks/grounding.py checkpoints/teacher runs/g2/event --scenes 12
    python benchmarks/grounding.py --quick checkpoints/teacher          (4 scenes, 3 tasks)

Measured 2026-12-01 (session 4): the DAgger teachers' first moves were the same in every scene (moving
the goal marker or the puck changed no action), which is why reach and pick-place fail in closed loop.
"""

from __future__ import annotations

import argparse

import numpy as np

SEEN = ("pick-place-v3", "push-v3", "bin-picking-v3", "shelf-place-v3", "button-press-topdown-v3", "drawer-open-v3",
        "reach-v3")
SCENE_SALT = 0x6E0  # scene seeds of this benchmark: disjoint by construction from generate's hashed seeds


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-9)


def directions(ckpt: str, task: str, seeds: list[int], steps: int, actor=None) -> tuple[np.ndarray, np.ndarray]:
    """(policy (S, 3), expert (S, 3)) mean xyz action over the first `steps` steps of each scene."""
    from wallwm_edge.eval.actors import CheckpointActor
    import random

    from wallwm_edge.eval.closed_loop import registry_plans, task_instruction
    from wallwm_edge.sim.metaworld_env import MetaWorldEnv, SimConfig

    actor = actor or CheckpointActor(ckpt)
    if actor.mode == "event":  # the plan's first event, as the closed loop would ask for it
        instruction = registry_plans("caption", 0)[task].steps[0].instruction
    else:
        instruction = task_instruction(task, "caption", random.Random(0))
    pol, exp = [], []
    with MetaWorldEnv(SimConfig(task=task, views=tuple(actor.views), image_size=tuple(actor.image_size))) as env:
        for s in seeds:
            obs = env.reset(s)
            actor.reset(env, None, s)
            actions, _ = actor.act(obs, instruction)
            pol.append(np.asarray(actions[:steps, :3], np.float64).mean(0))
            e = []
            for _ in range(steps):
                a = env.expert_action()
                e.append(a[:3])
                env.step(a)
            exp.append(np.mean(e, 0))
    return np.array(pol), np.array(exp)


def score(pol: np.ndarray, exp: np.ndarray) -> dict:
    blind = np.broadcast_to(exp.mean(0), exp.shape)
    cos = lambda a, b: float(np.mean(np.sum(_unit(a) * _unit(b), -1)))  # noqa: E731
    axes = [k for k in range(3) if exp[:, k].std() > 0.1]
    corr = [float(np.corrcoef(pol[:, k], exp[:, k])[0, 1]) if pol[:, k].std() > 1e-6 else 0.0 for k in axes]
    return {"cos_policy": round(cos(pol, exp), 3), "cos_blind": round(cos(blind, exp), 3),
            "corr": round(float(np.mean(corr)), 3) if corr else None, "varying_axes": "".join("xyz"[k] for k in axes),
            "policy_spread": round(float(pol.std(0).mean()), 3), "expert_spread": round(float(exp.std(0).mean()), 3)}


def main(argv=None) -> int:
    import torch

    from wallwm_edge.bench import write_result
    from wallwm_edge.eval.actors import CheckpointActor

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="checkpoint folders or files to compare")
    ap.add_argument("--scenes", type=int, default=12, help="unseen scenes per task (default 12)")
    ap.add_argument("--steps", type=int, default=8, help="first steps compared (default 8, the closed loop's max_exec)")
    ap.add_argument("--tasks", default=",".join(SEEN))
    ap.add_argument("--quick", action="store_true", help="4 scenes, 3 tasks")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    tasks = [t for t in args.tasks.split(",") if t]
    n = args.scenes
    if args.quick:
        tasks, n = ["reach-v3", "pick-place-v3", "push-v3"], 4
    seeds = [SCENE_SALT * 1000 + i for i in range(n)]
    figures = {}
    for ck in args.checkpoints:
        actor = CheckpointActor(ck)
        per = {}
        for t in tasks:
            per[t] = score(*directions(ck, t, seeds, args.steps, actor))
            print(f"{ck:28s} {t:26s} " + " ".join(f"{k}={v}" for k, v in per[t].items()), flush=True)
        corr = [v["corr"] for v in per.values() if v["corr"] is not None]
        figures[ck] = {"tasks": per, "mean_cos_policy": round(float(np.mean([v["cos_policy"] for v in per.values()])), 3),
                       "mean_cos_blind": round(float(np.mean([v["cos_blind"] for v in per.values()])), 3),
                       "mean_corr": round(float(np.mean(corr)), 3) if corr else None, "scenes": n, "steps": args.steps}
        print(f"{ck}: mean cos policy {figures[ck]['mean_cos_policy']} (blind {figures[ck]['mean_cos_blind']}), "
              f"mean corr {figures[ck]['mean_corr']}", flush=True)
    write_result("grounding", figures, goals={}, met={})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
