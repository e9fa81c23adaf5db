"""Automatic segmentation of unlabeled episodes: boundary F1 against the expert-phase ground truth.

Generates a Meta-World dataset (every registered task, seen and held out), hides the events, segments
each episode from proprio + actions only (`wallwm_edge.events.segment`) and scores the boundaries
against the ground-truth events at a tolerance of 3 frames (37.5 ms at 80 Hz), on the action track
(main figure) and the subtask / segment tracks. Two baselines are measured in the same run:
  - gripper-only: a boundary wherever the gripper command changes sign (the cheapest cue),
  - uniform: the same number of boundaries as our segmenter predicts, evenly spaced.

    python benchmarks/segmentation.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from wallwm_edge.bench import write_result
from wallwm_edge.data.dataset import Dataset
from wallwm_edge.events.segment import SegmentConfig, match_counts, segment_boundaries, true_boundaries
from wallwm_edge.events.vocab import TASKS
from wallwm_edge.sim.generate import generate_dataset

TOL = 3


def gripper_only(proprio, actions):
    cmd = np.asarray(actions)[:, 3] > 0
    return np.flatnonzero(cmd[1:] != cmd[:-1]) + 1


def uniform_like(proprio, actions, n):
    T = len(proprio)
    return np.round(np.linspace(0, T, n + 2)[1:-1]).astype(np.int64)


def score(episodes, predict, track, tol=TOL):
    TP = NP = NT = 0
    for ep in episodes:
        pred = predict(ep)
        tp, n_p, n_t = match_counts(pred, true_boundaries(ep.events, track), tol)
        TP, NP, NT = TP + tp, NP + n_p, NT + n_t
    p = TP / NP if NP else 0.0
    r = TP / NT if NT else 0.0
    return {"f1": 2 * p * r / (p + r) if p + r else 0.0, "precision": p, "recall": r, "true": NT, "pred": NP}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 episodes per task instead of 8")
    ap.add_argument("--data", default=None, help="score this existing dataset instead of generating one")
    args = ap.parse_args(argv)
    cfg = SegmentConfig()
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            root = Path(args.data)
            gen = None
        else:
            root = Path(tmp) / "mw"
            gen = generate_dataset(root, tasks=list(TASKS), episodes_per_task=2 if args.quick else 8, image_size=(32, 32),
                                   seed=123, workers=2, progress=True)
        eps = list(Dataset.open(root))
        ours = lambda ep: segment_boundaries(ep.proprio, ep.actions, cfg)  # noqa: E731
        figures = {"episodes": len(eps), "tolerance_frames": TOL, "fps": float(eps[0].fps) if eps else 0.0}
        for track in ("action", "subtask", "segment"):
            r = score(eps, ours, track)
            figures[f"{track}_f1"], figures[f"{track}_precision"], figures[f"{track}_recall"] = r["f1"], r["precision"], r["recall"]
            figures[f"{track}_true_boundaries"] = r["true"]
        r5 = score(eps, ours, "action", tol=5)
        figures["action_f1_tol5"] = r5["f1"]
        g = score(eps, lambda ep: gripper_only(ep.proprio, ep.actions), "action")
        u = score(eps, lambda ep: uniform_like(ep.proprio, ep.actions, len(ours(ep))), "action")
        figures["baseline_gripper_only_action_f1"] = g["f1"]
        figures["baseline_uniform_action_f1"] = u["f1"]
        figures["action_f1_over_gripper_only"] = figures["action_f1"] / max(g["f1"], 1e-9)
        figures["action_f1_over_uniform"] = figures["action_f1"] / max(u["f1"], 1e-9)
        per_task = {}
        for task in sorted({ep.task for ep in eps}):
            per_task[task] = round(score([e for e in eps if e.task == task], ours, "action")["f1"], 3)
        figures["action_f1_per_task"] = per_task
        if gen:
            figures["generation_episodes_per_min_2_workers_32px"] = gen["episodes_per_min"]
            figures["generation_discarded_attempts"] = gen["discarded_attempts"]
    goals = {"action_f1": ">= 0.70 at +-3 frames", "action_f1_over_uniform": ">= 1.5"}
    met = {"action_f1": figures["action_f1"] >= 0.70, "action_f1_over_uniform": figures["action_f1_over_uniform"] >= 1.5}
    write_result("segmentation", figures, goals, met)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
