"""Cluster-balanced event sampling: frequent events must not drown out rare ones.

Event captions are embedded (all-MiniLM-L6-v2, `encoder.py`) and clustered with k-means; a draw picks
a cluster uniformly, then an event uniformly within it. So "move the gripper across", which occurs in
every episode, is drawn as often as "press the button", which occurs in one task.

    index = EventIndex.from_dataset(ds, tracks=("subtask", "action"))
    labels = cluster_captions(index, encoder, k=8, seed=0)
    sampler = ClusterBalancedSampler(labels, num_samples=10_000, seed=0, rank=r, world_size=W)
    sampler.set_epoch(epoch)            # as with DistributedSampler
    DataLoader(event_dataset, sampler=sampler, num_workers=4)

Distributed: every rank builds the same global sequence of num_samples * world_size draws from
(seed, epoch) and keeps positions rank, rank + W, ...: shards are disjoint and together are the
global sequence, whatever the number of DataLoader workers (the sampler runs in the main process).
Within a cluster, events are drawn from a shuffled cycle (a permutation, reshuffled when used up), so
an event repeats in an epoch only once its whole cluster has been drawn.

The core is numpy; torch is only needed to subclass torch.utils.data.Sampler, and is optional.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wallwm_edge.errors import ConfigError

try:  # a real torch Sampler when torch is there; the module works without it
    from torch.utils.data import Sampler as _SamplerBase
except ImportError:  # pragma: no cover - the torch-free runtime
    _SamplerBase = object


def kmeans(X: np.ndarray, k: int, seed: int = 0, iters: int = 100, restarts: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """k-means with k-means++ init (best of `restarts` by inertia). X (N, D) -> labels (N,), centres (k, D).

    A small numpy k-means instead of scikit-learn: the project does not otherwise need sklearn, and
    N is the number of distinct captions (tens to thousands)."""
    X = np.asarray(X, np.float64)
    N = len(X)
    if not 1 <= k <= N:
        raise ConfigError(f"k-means: k must be in 1..{N} (the number of points), got {k}")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        C = X[[rng.integers(N)]]
        for _ in range(1, k):  # k-means++: next centre with probability ~ squared distance
            d2 = ((X[:, None] - C[None]) ** 2).sum(-1).min(1)
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(N, 1 / N)
            C = np.vstack([C, X[rng.choice(N, p=p)]])
        for _ in range(iters):
            lab = ((X[:, None] - C[None]) ** 2).sum(-1).argmin(1)
            newC = np.stack([X[lab == j].mean(0) if np.any(lab == j) else C[j] for j in range(k)])
            if np.allclose(newC, C):
                break
            C = newC
        inertia = ((X - C[lab]) ** 2).sum()
        if best is None or inertia < best[0]:
            best = (inertia, lab, C)
    return best[1].astype(np.int64), best[2]


@dataclass(frozen=True)
class EventRef:
    episode_id: str
    event: int  # index into the episode's event list
    track: str
    start: int
    end: int
    key: str
    caption: str


class EventIndex:
    """Every event of a dataset on the chosen tracks, flattened: the unit the sampler draws."""

    def __init__(self, refs: list[EventRef]):
        self.refs = refs

    @classmethod
    def from_dataset(cls, ds, tracks=("subtask", "action")) -> "EventIndex":
        refs = []
        for eid in ds.episode_ids:
            ep = ds.episode(eid)
            for i, e in enumerate(ep.events):
                if e.track in tracks:
                    refs.append(EventRef(eid, i, e.track, e.start, e.end, e.key, e.caption))
        return cls(refs)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> EventRef:
        return self.refs[i]

    @property
    def captions(self) -> list[str]:
        return [r.caption for r in self.refs]


def cluster_captions(captions: list[str] | EventIndex, encoder, k: int, seed: int = 0) -> np.ndarray:
    """(N,) cluster of each caption: k-means over the embeddings of the distinct captions."""
    if isinstance(captions, EventIndex):
        captions = captions.captions
    uniq = sorted(set(captions))
    if not uniq:
        raise ConfigError("no events to cluster (is the dataset empty, or are the tracks right?)")
    E = encoder.encode(uniq)  # (U, 384)
    lab, _ = kmeans(E, min(k, len(uniq)), seed=seed)
    where = {c: lab[i] for i, c in enumerate(uniq)}
    return np.array([where[c] for c in captions], np.int64)


class ClusterBalancedSampler(_SamplerBase):
    """Yields event indices: cluster uniformly, then event uniformly (shuffled cycle) within it."""

    def __init__(self, labels, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        labels = np.asarray(labels, np.int64)
        if labels.ndim != 1 or len(labels) == 0:
            raise ConfigError(f"sampler: labels must be a non-empty (N,) array, got shape {labels.shape}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"sampler: rank must be in 0..{world_size - 1}, got {rank}")
        if num_samples < 1:
            raise ConfigError(f"sampler: num_samples must be >= 1, got {num_samples}")
        self.labels = labels
        self.clusters = [np.flatnonzero(labels == c) for c in np.unique(labels)]  # non-empty only
        self.num_samples = int(num_samples)  # per rank per epoch
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_order(self) -> np.ndarray:
        """The epoch's full sequence of num_samples * world_size draws (identical on every rank)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n = self.num_samples * self.world_size
        which = rng.integers(len(self.clusters), size=n)  # cluster of each draw, uniform
        out = np.empty(n, np.int64)
        for c, members in enumerate(self.clusters):
            pos = np.flatnonzero(which == c)
            if len(pos) == 0:
                continue
            reps = -(-len(pos) // len(members))  # enough shuffled cycles for this cluster's draws
            cyc = np.concatenate([rng.permutation(members) for _ in range(reps)])
            out[pos] = cyc[: len(pos)]
        return out

    def __iter__(self):
        return iter(self.global_order()[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples
