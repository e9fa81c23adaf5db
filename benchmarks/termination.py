"""Event-end decision rule of the event-mode teacher: tune it on the seen split, check it once on the
generalization splits (novel_scene, heldout_paraphrase, heldout_task).

The termination head outputs p_end per chunk step; the end rule (wallwm_edge.events.end_rule) turns
p_end[0] of a fresh observation into "this event is over" (the planner then hands out the next event,
and after the last one the episode stops) and p_end into how many steps of the chunk run. Knobs,
defaults first (the one rule the runtime uses):
    done_threshold  p_end[0] level that says the event is over            (EndRule)
    max_exec        steps of a chunk executed before the next observation (EndRule)
    end_confirm     fresh observations in a row that must say "done"       (EventPlanner)
Only the decision changes; the weights are the committed checkpoint's.

Protocol (no tuning on the generalization splits):
  1. every rule of GRID on the seen split (--tune-episodes per task), side by side;
  2. the best rule by seen Task Progress (ties: the earlier grid entry, the plain rule first) against
     the plain rule, still on the seen split only: --episodes per task, --confirm-seeds policy noise
     seeds, paired by episode (mean difference and its standard error);
  3. the same two rules, once, on the generalization splits with --episodes per task (the ablation's seeds).

    python benchmarks/termination.py --episodes 10 --tune-episodes 5 --confirm-seeds 2 --jobs 2
    python benchmarks/termination.py --quick      (2 rules, 1 episode, 2 tasks: a pipeline check)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

GEN_SPLITS = ("novel_scene", "heldout_paraphrase", "heldout_task")
# (done_threshold, max_exec, end_confirm); the first entry is the default rule.
GRID = ((0.5, 8, 1), (0.7, 8, 1), (0.9, 8, 1), (0.5, 4, 1), (0.5, 16, 1), (0.5, 8, 2), (0.3, 8, 1), (0.7, 4, 1))


def rule_name(rule) -> str:
    t, x, k = rule
    return f"d{t:g}_x{x}_k{k}"


def _eval_job(args) -> dict:
    """One (rule, splits) evaluation in a worker process; returns its summary plus how events ended."""
    ckpt, data, rule, splits, episodes, tasks, threads, out, seed = args
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(threads)
    from wallwm_edge.data.dataset import Dataset
    from wallwm_edge.eval.actors import CheckpointActor
    from wallwm_edge.eval.closed_loop import EvalConfig, evaluate
    from wallwm_edge.eval.report import summarize, write_json

    ds = Dataset.open(data)
    train_seed = int((ds.info.get("generator") or {}).get("seed", 0))
    exclude = frozenset(int(ep.seed) for ep in ds)
    t, x, k = rule
    actor = CheckpointActor(ckpt, seed=seed)
    cfg = EvalConfig(splits=tuple(splits), tasks=tasks, episodes=episodes, train_seed=train_seed, exclude_seeds=exclude,
                     done_threshold=t, max_exec=x, end_confirm=k, seed=seed)
    t0 = time.perf_counter()
    results = evaluate(actor, cfg, progress=False)
    summary = summarize(results)
    write_json(out, summary, results, {"policy": str(ckpt), "mode": actor.mode, "rule": list(rule),
                                       "eval_seconds": time.perf_counter() - t0, "episodes_per_task": episodes})
    reasons = [e.get("reason") for r in results for e in r.events if e.get("reason")]
    return {"rule": rule, "splits": splits, "summary": summary, "progress": [r.progress for r in results], "mean_steps": sum(r.steps for r in results) / len(results),
            "advanced_signalled": reasons.count("signalled"), "advanced_cap": reasons.count("cap"),
            "seconds": time.perf_counter() - t0}


def _row(job: dict, split: str | None = None) -> dict:
    s = job["summary"]["generalization" if split is None else split]
    return {"task_progress": round(s["task_progress"], 2), "success_rate": round(s["success_rate"], 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/teacher")
    p.add_argument("--data", default="data/mw64b", help="the teacher's training dataset (MODEL_CARD.md) (defines seen scenes; unseen ones avoid its seeds)")
    p.add_argument("--episodes", type=int, default=10, help="generalization episodes per task and split (default 10)")
    p.add_argument("--tune-episodes", type=int, default=5, help="seen-split episodes per task per rule (default 5)")
    p.add_argument("--confirm-seeds", type=int, default=2, help="policy noise seeds of the seen-split check (default 2)")
    p.add_argument("--jobs", type=int, default=2, help="evaluations in parallel (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job (default 1)")
    p.add_argument("--runs", default="runs/termination", help="per-evaluation JSONs go here")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    grid, tasks, gen_tasks = GRID, None, None
    if a.quick:
        grid, a.episodes, a.tune_episodes, a.confirm_seeds = GRID[:2], 1, 1, 1
        tasks = ("reach-v3", "push-v3")
        gen_tasks = ("reach-v3", "push-v3", "push-wall-v3")
    t0 = time.perf_counter()

    def job(rule, splits, episodes, tk, tag, seed=0):
        return (a.checkpoint, a.data, rule, splits, episodes, tk, a.threads, str(runs / f"{tag}_{rule_name(rule)}.json"), seed)

    with ProcessPoolExecutor(a.jobs) as pool:
        tuned = list(pool.map(_eval_job, [job(r, ("seen",), a.tune_episodes, tasks, "seen") for r in grid]))
        for j in tuned:
            print(f"seen {rule_name(j['rule'])}: TP {j['summary']['seen']['task_progress']:.1f} "
                  f"success {j['summary']['seen']['success_rate']:.1f} steps/ep {j['mean_steps']:.0f} "
                  f"advances signalled/cap {j['advanced_signalled']}/{j['advanced_cap']}", flush=True)
        # max() keeps the first of equals, so a tie goes to the earlier (simpler) rule, the default first.
        best = max(tuned, key=lambda j: j["summary"]["seen"]["task_progress"])["rule"]
        check = [grid[0]] + ([best] if best != grid[0] else [])
        confirm = list(pool.map(_eval_job, [job(r, ("seen",), a.episodes, tasks, f"confirm_seen_s{s}", s)
                                            for s in range(a.confirm_seeds) for r in check]))
        gen = list(pool.map(_eval_job, [job(r, GEN_SPLITS, a.episodes, gen_tasks, "gen") for r in check]))

    from wallwm_edge.bench import write_result

    figures: dict = {"checkpoint": a.checkpoint, "tune_split": "seen", "tune_episodes_per_task": a.tune_episodes,
                     "episodes_per_task_and_split": a.episodes, "chosen_rule": rule_name(best),
                     "chosen_done_threshold": best[0], "chosen_max_exec": best[1], "chosen_end_confirm": best[2]}
    for j in tuned:
        n = rule_name(j["rule"])
        figures[f"seen_{n}_task_progress"] = _row(j, "seen")["task_progress"]
        figures[f"seen_{n}_success_rate"] = _row(j, "seen")["success_rate"]
        figures[f"seen_{n}_mean_steps"] = round(j["mean_steps"], 1)
        figures[f"seen_{n}_advanced_signalled"] = j["advanced_signalled"]
        figures[f"seen_{n}_advanced_cap"] = j["advanced_cap"]
    import numpy as np

    for tag, i in (("default", 0), ("chosen", len(check) - 1)):
        js = confirm[i:: len(check)]
        figures[f"seen_confirm_{tag}_task_progress"] = round(float(np.mean([j["summary"]["seen"]["task_progress"] for j in js])), 2)
        figures[f"seen_confirm_{tag}_success_rate"] = round(float(np.mean([j["summary"]["seen"]["success_rate"] for j in js])), 2)
    diff = np.concatenate([np.subtract(confirm[i + len(check) - 1]["progress"], confirm[i]["progress"])
                           for i in range(0, len(confirm), len(check))])
    figures["seen_confirm_paired_episodes"] = len(diff)
    figures["seen_confirm_tp_gain_mean"] = round(float(diff.mean()), 2)
    figures["seen_confirm_tp_gain_se"] = round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 2) if len(diff) > 1 else None
    for j, tag in zip(gen, ["default", "chosen"]):
        for split in GEN_SPLITS:
            if split in j["summary"]:
                figures[f"gen_{tag}_{split}_task_progress"] = _row(j, split)["task_progress"]
        figures[f"gen_{tag}_generalization_task_progress"] = _row(j)["task_progress"]
        figures[f"gen_{tag}_generalization_success_rate"] = _row(j)["success_rate"]
        figures[f"gen_{tag}_mean_steps"] = round(j["mean_steps"], 1)
        figures[f"gen_{tag}_advanced_signalled"] = j["advanced_signalled"]
        figures[f"gen_{tag}_advanced_cap"] = j["advanced_cap"]
    if len(gen) == 1:  # the default rule won on seen: nothing else to check
        figures.update({k.replace("gen_default_", "gen_chosen_"): v for k, v in list(figures.items()) if k.startswith("gen_default_")})
    gain = figures["gen_chosen_generalization_task_progress"] - figures["gen_default_generalization_task_progress"]
    figures["gen_tp_gain_chosen_minus_default"] = round(gain, 2)
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    goals = {"gen_tp_gain_chosen_minus_default": "> 0 (the rule tuned on seen helps on the generalization splits)"}
    write_result("termination_quick" if a.quick else "termination", figures, goals, {"gen_tp_gain_chosen_minus_default": gain > 0})
    print(json.dumps({"chosen": rule_name(best), "gen_tp_gain": round(gain, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
