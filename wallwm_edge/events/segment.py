"""Automatic segmentation of episodes without labels, and boundary F1 against ground truth.

Input is only what any robot log has: proprio (hand xyz, gripper opening) and the commanded actions
(the gripper channel). No object state, no task name. A frame t is a candidate boundary when:
  - the gripper command changes sign (open <-> close commanded),
  - the gripper starts or stops moving (|d opening| crosses a rate),
  - the hand starts or stops moving (speed crosses a threshold relative to the episode's speed), or
    reaches a local speed minimum,
  - the hand's direction of motion turns by more than `turn_deg` (velocity before vs after t).
Candidates are scored by strength and thinned by non-maximum suppression within `min_gap` frames.

Scoring: predicted interior boundaries are matched one-to-one to ground-truth ones (the starts of the
events on a track, excluding 0) when within `tol` frames; precision, recall and F1 follow. The
default ground truth is the action track; tol = 3 frames (37.5 ms at Meta-World's 80 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegmentConfig:
    grip_rate: float = 0.01  # opening change per frame that counts as the gripper moving
    # Defaults picked by a small grid search on 36 expert episodes of every registered task generated
    # with seed 5; benchmarks/segmentation.py scores them on other episodes (seed 123).
    still_frac: float = 0.25  # hand still below this fraction of the episode's 90th-percentile speed
    turn_deg: float = 50.0  # direction change that makes a boundary
    turn_window: int = 5  # frames of velocity averaged before / after t
    min_gap: int = 6  # non-maximum suppression radius (frames)
    smooth: int = 3  # moving-average window for velocities
    min_score: float = 1.0  # a candidate needs at least this much evidence (cue weights below)


def _smooth(x: np.ndarray, w: int) -> np.ndarray:
    if w <= 1 or len(x) < w:
        return x
    k = np.ones(w) / w
    pad = np.pad(x, [(w // 2, w - 1 - w // 2)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    if x.ndim == 1:
        return np.convolve(pad, k, mode="valid")
    return np.stack([np.convolve(pad[:, i], k, mode="valid") for i in range(x.shape[1])], 1)


def _crossings(mask: np.ndarray) -> np.ndarray:
    """Frames t where mask[t] != mask[t-1]."""
    return np.flatnonzero(mask[1:] != mask[:-1]) + 1


def segment_boundaries(proprio: np.ndarray, actions: np.ndarray, cfg: SegmentConfig = SegmentConfig()) -> np.ndarray:
    """Predicted interior boundaries (sorted frame indices in 1..T-1) of one episode.

    proprio (T, 4): hand xyz, gripper opening; actions (T, 4): dx, dy, dz, gripper command."""
    proprio = np.asarray(proprio, np.float64)
    actions = np.asarray(actions, np.float64)
    T = len(proprio)
    if T < 3:
        return np.zeros(0, np.int64)
    score = np.zeros(T)
    # gripper: commanded sign change, strongest cue
    cmd = actions[:, 3] > 0
    score[_crossings(cmd)] += 3.0
    # gripper motion onset / offset
    dg = _smooth(np.diff(proprio[:, 3], append=proprio[-1, 3]), cfg.smooth)
    score[_crossings(dg < -cfg.grip_rate)] += 2.0
    score[_crossings(dg > cfg.grip_rate)] += 2.0
    # hand speed: start/stop and local minima
    v = _smooth(np.diff(proprio[:, :3], axis=0, append=proprio[-1:, :3]), cfg.smooth)  # (T, 3)
    speed = np.linalg.norm(v, axis=1)
    ref = max(np.percentile(speed, 90), 1e-6)
    still = speed < cfg.still_frac * ref
    score[_crossings(still)] += 1.5
    interior = np.arange(1, T - 1)
    minima = interior[(speed[interior] < speed[interior - 1]) & (speed[interior] <= speed[interior + 1]) & (speed[interior] < 0.5 * ref)]
    score[minima] += 1.0
    # direction change: angle between mean velocity before and after t
    w = cfg.turn_window
    cs = np.cumsum(np.vstack([np.zeros((1, 3)), v]), axis=0)
    for t in range(w, T - w):
        a, b = cs[t] - cs[t - w], cs[t + w] - cs[t]
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na < w * cfg.still_frac * ref or nb < w * cfg.still_frac * ref:
            continue
        if np.dot(a, b) / (na * nb) < np.cos(np.deg2rad(cfg.turn_deg)):
            score[t] += 1.0
    # a span shorter than min_gap at either end of the episode is not an event of its own
    score[: cfg.min_gap] = 0.0
    score[T - cfg.min_gap + 1 :] = 0.0
    # non-maximum suppression: keep the strongest candidate, drop others within min_gap
    cand = np.flatnonzero(score >= cfg.min_score)
    order = cand[np.lexsort((cand, -score[cand]))]
    kept: list[int] = []
    for t in order:
        if all(abs(t - k) >= cfg.min_gap for k in kept):
            kept.append(int(t))
    return np.array(sorted(kept), np.int64)


def true_boundaries(events, track: str = "action") -> np.ndarray:
    """Interior boundaries of one episode's events on `track` (event starts, excluding frame 0)."""
    starts = sorted({e.start for e in events if e.track == track} | {e.end for e in events if e.track == track})
    ends = max((e.end for e in events if e.track == track), default=0)
    return np.array([s for s in starts if 0 < s < ends], np.int64)


def match_counts(pred: np.ndarray, true: np.ndarray, tol: int) -> tuple[int, int, int]:
    """(true positives, #pred, #true): greedy one-to-one matching, closest pairs first, |dt| <= tol."""
    pairs = sorted((abs(int(p) - int(t)), i, j) for i, p in enumerate(pred) for j, t in enumerate(true) if abs(int(p) - int(t)) <= tol)
    used_p, used_t, tp = set(), set(), 0
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            tp += 1
    return tp, len(pred), len(true)


def boundary_f1(episodes, track: str = "action", tol: int = 3, cfg: SegmentConfig = SegmentConfig()) -> dict:
    """Micro-averaged boundary precision / recall / F1 of `segment_boundaries` over episodes."""
    TP = NP = NT = 0
    for ep in episodes:
        pred = segment_boundaries(np.asarray(ep.proprio), np.asarray(ep.actions), cfg)
        tp, n_p, n_t = match_counts(pred, true_boundaries(ep.events, track), tol)
        TP, NP, NT = TP + tp, NP + n_p, NT + n_t
    precision = TP / NP if NP else 0.0
    recall = TP / NT if NT else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, "tolerance_frames": tol, "track": track,
            "true_boundaries": NT, "predicted_boundaries": NP}
