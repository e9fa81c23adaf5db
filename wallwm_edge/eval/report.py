"""Episode results -> per-task and per-split metrics, a printed table and a JSON file.

Metrics (the paper's, DESIGN.md):
- success rate: percent of episodes where the simulator reports task success at any step;
- Task Progress (TP): percent of the task's events completed, in order (partial credit, 0-100; see
  `wallwm_edge/runtime/progress.py` for how an event counts as completed).
A split's figure is the mean over its tasks (each task weighted equally, so a split's number does not
depend on how many episodes each task happened to get); the generalization figure is the mean of the
generalization splits' figures, and it names the splits it averages and those it lacks ("missing"): a
figure over fewer than the three is never passed off as the full one. Every mean carries its standard error (`*_se`): a split's is the
standard error of an equal-weight mean of per-task means, sqrt(sum_t s_t^2 / n_t) / T with s_t the
episode-to-episode standard deviation within task t; the generalization figure's combines its splits'.
`paired_difference` compares two runs episode by episode (same task and scene seed), the figure to use
when the conditions share scenes and noise (closed_loop.noise_seed).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMAT = "wallwm-eval/1"
GENERALIZATION_SPLITS = ("novel_scene", "heldout_paraphrase", "heldout_task")


@dataclass
class EpisodeResult:
    split: str
    task: str
    seed: int
    success: bool
    events_completed: int
    events_total: int
    steps: int
    events: list = field(default_factory=list)  # per plan step: key, instruction, start, end, reason, completed_at

    @property
    def progress(self) -> float:
        return 100.0 * self.events_completed / max(1, self.events_total)

    def to_json(self) -> dict:
        return {**asdict(self), "progress": self.progress}


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else float("nan")


def _se_of_task_means(groups: list[list[float]]) -> float:
    """Standard error of the equal-weight mean of per-group means (0 for groups of one episode)."""
    import math

    if not groups:
        return float("nan")
    acc = 0.0
    for xs in groups:
        n = len(xs)
        if n > 1:
            m = sum(xs) / n
            acc += sum((x - m) ** 2 for x in xs) / (n - 1) / n
    return math.sqrt(acc) / len(groups)


def paired_difference(a: list[EpisodeResult], b: list[EpisodeResult], metric: str = "progress") -> dict:
    """Mean and standard error of a - b over episodes matched by (task, seed); `metric` progress or success."""
    import math

    key = {(r.task, r.seed): r for r in b}
    diffs = [float(getattr(r, metric)) * (100.0 if metric == "success" else 1.0)
             - float(getattr(key[(r.task, r.seed)], metric)) * (100.0 if metric == "success" else 1.0)
             for r in a if (r.task, r.seed) in key]
    n = len(diffs)
    if n == 0:
        return {"pairs": 0, "mean": float("nan"), "se": float("nan")}
    m = sum(diffs) / n
    sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / (n - 1)) if n > 1 else float("nan")
    return {"pairs": n, "mean": m, "se": sd / math.sqrt(n)}


def summarize(results: list[EpisodeResult]) -> dict:
    """{split: {"success_rate", "task_progress", "episodes", "tasks": {task: {...}}}, "generalization": {...}}."""
    splits: dict[str, dict] = {}
    for r in results:
        splits.setdefault(r.split, {}).setdefault(r.task, []).append(r)
    out: dict = {}
    for split, tasks in splits.items():
        per_task = {
            t: {
                "episodes": len(rs),
                "success_rate": 100.0 * _mean(r.success for r in rs),
                "task_progress": _mean(r.progress for r in rs),
                "mean_steps": _mean(r.steps for r in rs),
            }
            for t, rs in sorted(tasks.items())
        }
        out[split] = {
            "episodes": sum(v["episodes"] for v in per_task.values()),
            "success_rate": _mean(v["success_rate"] for v in per_task.values()),
            "success_rate_se": _se_of_task_means([[100.0 * r.success for r in rs] for rs in tasks.values()]),
            "task_progress": _mean(v["task_progress"] for v in per_task.values()),
            "task_progress_se": _se_of_task_means([[r.progress for r in rs] for rs in tasks.values()]),
            "tasks": per_task,
        }
    gen = [out[s] for s in GENERALIZATION_SPLITS if s in out]
    if gen:
        import math

        out["generalization"] = {
            "splits": [s for s in GENERALIZATION_SPLITS if s in out],
            "missing": [s for s in GENERALIZATION_SPLITS if s not in out],
            "success_rate": _mean(g["success_rate"] for g in gen),
            "success_rate_se": math.sqrt(sum(g["success_rate_se"] ** 2 for g in gen)) / len(gen),
            "task_progress": _mean(g["task_progress"] for g in gen),
            "task_progress_se": math.sqrt(sum(g["task_progress_se"] ** 2 for g in gen)) / len(gen),
        }
    return out


def _pm(d: dict, key: str) -> str:
    se = d.get(f"{key}_se")
    return f"{d[key]:.1f}" + (f" +- {se:.1f}" if se is not None else "")


def format_table(summary: dict) -> str:
    """A fixed-width table: one row per (split, task), then a row per split and the generalization mean."""
    rows = [("split", "task", "episodes", "success %", "TP")]
    for split, s in summary.items():
        if split == "generalization":
            continue
        for task, t in s["tasks"].items():
            rows.append((split, task, str(t["episodes"]), f"{t['success_rate']:.1f}", f"{t['task_progress']:.1f}"))
        rows.append((split, "(mean over tasks)", str(s["episodes"]), _pm(s, "success_rate"), _pm(s, "task_progress")))
    if "generalization" in summary:
        g = summary["generalization"]
        missing = g.get("missing") or []
        label = "(mean of " + ", ".join(g["splits"]) + ("; without " + ", ".join(missing) if missing else "") + ")"
        rows.append(("generalization", label, "", _pm(g, "success_rate"), _pm(g, "task_progress")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def write_json(path: str | os.PathLike, summary: dict, results: list[EpisodeResult], meta: dict) -> Path:
    """Write {"format", **meta, "summary", "episodes"} atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, **meta, "summary": summary, "episodes": [r.to_json() for r in results]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    os.replace(tmp, path)
    return path
