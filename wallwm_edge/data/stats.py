"""Dataset statistics: `wallwm-edge data stats PATH`.

Counts (episodes, frames, per task, events per track and per key), success rate, and per-dimension
mean/std/min/max of actions and proprio. Moments are accumulated in float64 one episode at a time
(Chan's parallel update), so memory stays O(A + P) however large the dataset.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.validate import clip


@dataclass
class Moments:
    """Running count/mean/M2/min/max of (N, D) rows, merged batch by batch."""

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(len(x), -1)  # (N, D)
        if len(x) == 0:
            return
        bm, bn = x.mean(0), len(x)
        bm2 = ((x - bm) ** 2).sum(0)
        if self.n == 0:
            self.n, self.mean, self.m2, self.lo, self.hi = bn, bm, bm2, x.min(0), x.max(0)
            return
        n = self.n + bn
        delta = bm - self.mean
        self.mean = self.mean + delta * bn / n
        self.m2 = self.m2 + bm2 + delta**2 * self.n * bn / n
        self.n = n
        self.lo, self.hi = np.minimum(self.lo, x.min(0)), np.maximum(self.hi, x.max(0))

    def to_json(self) -> dict:
        if self.n == 0:
            return {"count": 0}
        std = np.sqrt(self.m2 / self.n)
        return {"count": self.n, "mean": self.mean.tolist(), "std": std.tolist(), "min": self.lo.tolist(), "max": self.hi.tolist()}


@dataclass
class Stats:
    episodes: int = 0
    frames: int = 0
    successes: int = 0
    tasks: Counter = field(default_factory=Counter)  # task -> episodes
    tracks: Counter = field(default_factory=Counter)  # track -> events
    keys: dict = field(default_factory=lambda: defaultdict(Counter))  # track -> key -> events
    event_lengths: dict = field(default_factory=lambda: defaultdict(list))  # track -> [frames]
    actions: Moments = field(default_factory=Moments)
    proprio: Moments = field(default_factory=Moments)

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    def to_json(self) -> dict:
        return {
            "episodes": self.episodes,
            "frames": self.frames,
            "success_rate": self.success_rate,
            "tasks": dict(sorted(self.tasks.items())),
            "events_per_track": dict(self.tracks),
            "events_per_key": {t: dict(sorted(c.items())) for t, c in self.keys.items()},
            "event_length": {
                t: {"mean": float(np.mean(v)), "min": int(np.min(v)), "max": int(np.max(v))} for t, v in self.event_lengths.items() if v
            },
            "actions": self.actions.to_json(),
            "proprio": self.proprio.to_json(),
        }


def dataset_stats(root: str | os.PathLike, progress: Callable | None = None) -> Stats:
    ds = Dataset.open(root)
    st = Stats()
    ids = ds.episode_ids
    for eid in progress(ids) if progress else ids:
        ep = ds.episode(eid)
        st.episodes += 1
        st.frames += ep.num_frames
        st.successes += int(ep.success)
        st.tasks[ep.task] += 1
        for e in ep.events:
            st.tracks[e.track] += 1
            st.keys[e.track][e.key] += 1
            st.event_lengths[e.track].append(e.length)
        st.actions.add(ep.actions)
        st.proprio.add(ep.proprio)
    return st


def format_stats(st: Stats) -> str:
    fmt = lambda a: "[" + ", ".join(f"{x:+.3f}" for x in a) + "]"  # noqa: E731
    lines = [
        f"episodes      {st.episodes}",
        f"frames        {st.frames}",
        f"success rate  {st.success_rate:.1%}",
        "tasks         " + ", ".join(f"{clip(t, 80)}: {n}" for t, n in sorted(st.tasks.items())),
        "events        " + ", ".join(f"{clip(t, 80)}: {st.tracks[t]}" for t in st.tracks),
    ]
    for track, keys in st.keys.items():  # keys and tasks are user text: escaped, so no control character reaches the terminal
        lines.append(f"  {clip(track, 80):8s}    " + ", ".join(f"{clip(k, 80)}: {n}" for k, n in sorted(keys.items())))
    for name, m in (("actions", st.actions), ("proprio", st.proprio)):
        if m.n:
            j = m.to_json()
            lines += [f"{name:8s} mean {fmt(j['mean'])}", f"         std  {fmt(j['std'])}", f"         min  {fmt(j['min'])}", f"         max  {fmt(j['max'])}"]
    return "\n".join(lines)


def plot_event_lengths(st: Stats, out: str | os.PathLike) -> Path:
    """Histogram of event lengths (frames), one panel per track, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = [t for t in st.event_lengths if st.event_lengths[t]]
    fig, axes = plt.subplots(1, max(1, len(tracks)), figsize=(3.2 * max(1, len(tracks)), 2.8), squeeze=False)
    for ax, track in zip(axes[0], tracks):
        ax.hist(st.event_lengths[track], bins=20, color="tab:blue")
        ax.set_title(f"{track} ({len(st.event_lengths[track])})")
        ax.set_xlabel("length (frames)")
    axes[0][0].set_ylabel("events")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
