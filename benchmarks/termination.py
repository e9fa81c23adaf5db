"""Event-end decision rule of the event-mode teacher: tune it on the seen split, check it once on the
generalization splits (novel_scene, heldout_paraphrase, heldout_task).

The termination head outputs p_end per chunk step; the decision rule turns that into "this event is
over" (the planner then hands out the next event, and after the last one the episode stops). The rule
has three knobs, defaults = the plain rule (advance on the first chunk whose p_end crosses 0.5):
    end_threshold  p_end level that cuts the chunk and signals the end   (Policy / CheckpointActor)
    end_confirm    chunks in a row that must signal it                    (EventPlanner)
    min_event_steps  signals before this many steps of the event are ignored (EventPlanner)
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
# (end_threshold, end_confirm, min_event_steps); the first entry is the plain rule (first crossing of 0.5).
GRID = ((0.5, 1, 0), (0.7, 1, 0), (0.9, 1, 0), (0.97, 1, 0), (0.5, 2, 0), (0.5, 3, 0), (0.9, 2, 0), (0.5, 1, 30))


def rule_name(rule) -> str:
    t, k, m = rule
    return f"t{t:g}_k{k}_m{m}"


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
    t, k, m = rule
    actor = CheckpointActor(ckpt, seed=seed)  # evaluate() applies cfg.end_threshold
    cfg = EvalConfig(splits=tuple(splits), tasks=tasks, episodes=episodes, train_seed=train_seed, exclude_seeds=exclude,
                     end_threshold=t, end_confirm=k, min_event_steps=m, seed=seed)
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
    p.add_argument("--data", default="data/mw64", help="the training dataset (defines seen scenes; unseen ones avoid its seeds)")
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
                     "chosen_end_threshold": best[0], "chosen_end_confirm": best[1], "chosen_min_event_steps": best[2]}
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
