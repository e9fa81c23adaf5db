"""Dataset -> training samples: EVENTS (event mode) or fixed-length chunks (unified mode, the ablation).

Event mode (the paper's recipe): an item is one event on `track` (default "subtask", the planner's
next-event granularity). A sample picks a frame t inside the event and targets the actions from t to
the event's end, capped at L = horizon; the termination target is 1 from the event's last step on
(all 0 when the event runs past the horizon: the policy executes L steps and is asked again). The
instruction is the event's caption or one of its TRAINING texts (wallwm_edge.events.language: verb and
object synonyms, sentence shapes, casing, typos; held-out paraphrases never).

"Done" samples (the share `done_fraction`): expert data alone never shows an event that is over, so the
termination head could only learn "ends soon", not "is done". A done sample takes a frame AFTER its
event's end (up to the end of the next event) with the finished event's instruction: the target is
end = 1 from step 0 (the event is over before any action) and no action or video loss (there is no
expert action for an event already done). So p_end[0] on a fresh observation answers "is this event
done?" (wallwm_edge.events.end_rule), while p_end over the chunk still forecasts where it ends.

Unified / fixed-chunk mode: an item is a whole episode (its task event); a sample picks any frame and
targets the next L actions, whatever events they cross, with the TASK instruction.

Items are drawn cluster-balanced (wallwm_edge.events.sampler): the items' captions are embedded and
k-means clustered, a draw picks a cluster uniformly, then an item within it, so a rare event is drawn
as often as one that occurs in every episode.

Sampling is split in two so multi-process training stays exact: `plan(rng, B, position)` draws every
random choice of the GLOBAL batch (cheap; `position` = samples drawn so far, so the sampler's sequence
is a pure function of the step), and `materialize(rows)` reads only the rows a rank needs.

A sample (numpy):
    images (V, H, W, 3) u8, future_images (F, V, H, W, 3) u8, proprio (P,) f32, actions (L, A) f32,
    action_valid (L,) bool, end_target (L,) f32, instruction (384,) f32, view_mask (Vn, Vn) bool
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from wallwm_edge.data.dataset import Dataset
from wallwm_edge.errors import ConfigError, DataError
from wallwm_edge.events.language import training_texts
from wallwm_edge.model.presets import ModelConfig
from wallwm_edge.model.sightcone import SightCone

Embedder = Callable[[Sequence[str]], np.ndarray]  # texts -> (N, 384) float32


@dataclass(frozen=True)
class Item:
    episode: int  # index into SampleSource.episodes
    start: int  # frames [start, end) the sample's first frame is drawn from
    end: int  # the event's end (event mode) or the episode's length
    key: str  # cluster key for balancing (event key, or task)
    texts: tuple[str, ...]  # caption first, then training texts
    done_end: int = 0  # frames [end, done_end) show this event already done (0: none, e.g. the last event)


def default_embedder() -> Embedder:
    """The project's sentence encoder (all-MiniLM-L6-v2, 384-d, disk-cached: wallwm_edge.events.encoder)."""
    from wallwm_edge.events.encoder import CaptionEncoder

    return CaptionEncoder().encode


def hash_embedder(dim: int = 384) -> Embedder:
    """Bag of hashed character trigrams, L2-normalised: deterministic, instant, no model to load.

    For tests and quick pipeline checks only (`--text-encoder hash`): it knows spelling, not meaning,
    so paraphrases land far apart. Real training uses `default_embedder()`.
    """

    def embed(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), dim), np.float32)
        for i, text in enumerate(texts):
            s = f"  {text.lower()}  "
            for j in range(len(s) - 2):
                h = int.from_bytes(hashlib.blake2b(s[j : j + 3].encode(), digest_size=4).digest(), "little")
                out[i, h % dim] += 1.0 if (h >> 31) & 1 else -1.0
            out[i] /= max(1e-6, float(np.linalg.norm(out[i])))
        return out

    return embed


def dataset_fingerprint(ds: Dataset) -> str:
    """sha256 over dataset.json's shape fields and every episode's meta.json (which holds the array sha256s)."""
    h = hashlib.sha256()
    for key in ("views", "image_size", "action_dim", "proprio_dim"):
        h.update(repr(ds.info.get(key)).encode())
    for eid in ds.episode_ids:
        h.update(eid.encode())
        h.update((ds.episode_path(eid) / "meta.json").read_bytes())
    return h.hexdigest()[:16]


class SampleSource:
    def __init__(self, ds: Dataset, cfg: ModelConfig, embed: Embedder, track: str = "subtask", split: str | None = None,
                 paraphrases: bool = True, clusters: int = 8, seed: int = 0, done_fraction: float = 0.0,
                 goals=None):
        """goals: optional callable (episodes) -> (E, 3) float32, each episode's goal position (normalised);
        samples then carry it as "goal" (the trainer's auxiliary goal probe)."""
        if not 0.0 <= done_fraction < 1.0:
            raise ConfigError(f"done_fraction must be in [0, 1), got {done_fraction}")
        cfg.check_data(views=ds.views, action_dim=ds.info["action_dim"], proprio_dim=ds.info["proprio_dim"], image_size=ds.image_size, where=f"dataset {ds.root}")
        self.cfg, self.track, self.paraphrases = cfg, track, paraphrases
        self.done_fraction = done_fraction if cfg.mode == "event" else 0.0
        ids = ds.episode_ids
        self.episodes = [ds.episode(i) for i in ids]
        if split is not None:
            self.episodes = [e for e in self.episodes if split in e.split_tags]
            if not self.episodes:
                raise DataError(f"{ds.root}: no episode has split tag {split!r}")
        self.items: list[Item] = []
        for i, ep in enumerate(self.episodes):
            if cfg.mode == "event":
                evs = ep.events_on(track)
                if not evs:
                    raise DataError(f"{ep.path or ep.episode_id}: no events on track {track!r} (event-mode training needs them)")
                for n, e in enumerate(evs):
                    done_end = evs[n + 1].end if n + 1 < len(evs) else 0
                    self.items.append(Item(i, e.start, e.end, e.key, _texts(e), done_end))
            else:
                task = ep.events_on("task")
                texts = _texts(task[0]) if task else (ep.task,)
                # the last frame has no next action worth learning; any earlier frame starts a chunk
                self.items.append(Item(i, 0, ep.num_frames, ep.task, texts))
        if not self.items:
            raise DataError(f"{ds.root}: no training items")
        self.goals = None if goals is None else np.asarray(goals(self.episodes), np.float32)  # (E, 3)
        self.keys = sorted({it.key for it in self.items})
        texts = sorted({t for it in self.items for t in it.texts})
        emb = np.asarray(embed(texts), np.float32)
        if emb.shape != (len(texts), cfg.instruction_dim):
            raise ConfigError(f"text embedder returned shape {emb.shape}, the model expects ({len(texts)}, {cfg.instruction_dim})")
        self.embedding = dict(zip(texts, emb))
        self.labels = self._cluster(clusters, seed)
        self.sampler_seed = seed
        self._epoch_len = 1000 * max(1, -(-len(self.items) // 1000))
        self._order: tuple[int, np.ndarray] | None = None
        # one sight-cone per distinct set of intrinsics; per-frame poses come from cam_poses
        self._cones: dict[str, SightCone] = {}
        self._cone_of = [self._cone_for(ep) for ep in self.episodes]

    def _cluster(self, k: int, seed: int) -> np.ndarray:
        """(items,) cluster label: k-means over the caption embeddings (wallwm_edge.events.sampler)."""
        from wallwm_edge.events.sampler import cluster_captions

        class _Enc:  # cluster_captions wants an object with .encode; captions are all embedded already
            encode = staticmethod(lambda texts: np.stack([self.embedding[t] for t in texts]))

        return cluster_captions([it.texts[0] for it in self.items], _Enc, k=k, seed=seed)

    def _draw(self, position: int) -> int:
        """Item at this position of the cluster-balanced sequence (epochs of fixed length)."""
        from wallwm_edge.events.sampler import ClusterBalancedSampler

        epoch, offset = divmod(position, self._epoch_len)
        if self._order is None or self._order[0] != epoch:
            sampler = ClusterBalancedSampler(self.labels, num_samples=self._epoch_len, seed=self.sampler_seed)
            sampler.set_epoch(epoch)
            self._order = (epoch, sampler.global_order())
        return int(self._order[1][offset])

    def _cone_for(self, ep) -> SightCone:
        sig = repr([(c.name, c.width, c.height, np.round(c.K, 6).tolist(), np.round(c.dist, 8).tolist()) for c in ep.rig.cameras])
        if sig not in self._cones:
            c = self.cfg
            self._cones[sig] = SightCone(ep.rig, c.views, c.patch, c.near, c.far, c.image_size)
        return self._cones[sig]

    # ------------------------------------------------------------------ statistics (fitted once)
    def action_proprio_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate([np.asarray(e.actions) for e in self.episodes]), np.concatenate([np.asarray(e.proprio) for e in self.episodes]))

    def ae_patches(self, rng: np.random.Generator, frames: int) -> np.ndarray:
        """(N, 3 p p) patches in [0, 1] from `frames` random frames (all views) for the autoencoder fit."""
        import torch

        from wallwm_edge.model.autoencoder import patchify

        out = []
        for _ in range(frames):
            ep = self.episodes[rng.integers(len(self.episodes))]
            img = np.array(ep.frames[rng.integers(ep.num_frames)])  # (V, H, W, 3), a writable copy
            out.append(patchify(torch.from_numpy(img)[None], self.cfg.patch)[0].numpy())
        return np.concatenate(out)

    # ------------------------------------------------------------------ sampling
    def plan(self, rng: np.random.Generator, batch: int, position: int | None = None) -> list[tuple[int, int, int]]:
        """The global batch's random choices: (item, frame, text index) per row. Items come from the
        cluster-balanced sequence at `position` .. `position + batch` (None: a position drawn from
        `rng`); frame and text from `rng`."""
        if position is None:
            position = int(rng.integers(1 << 40))
        rows = []
        for i in range(batch):
            j = self._draw(position + i)
            it = self.items[j]
            last = max(it.start + 1, it.end - (0 if self.cfg.mode == "event" else 1))
            if self.done_fraction and it.done_end > it.end and rng.random() < self.done_fraction:
                t = int(rng.integers(it.end, it.done_end))  # a done sample (see the module docstring)
            else:
                t = int(rng.integers(it.start, last))
            k = 0 if (not self.paraphrases or len(it.texts) == 1 or rng.random() < 0.3) else int(rng.integers(1, len(it.texts)))
            rows.append((j, t, k))
        return rows

    def sample(self, j: int, t: int, k: int) -> dict[str, np.ndarray]:
        cfg, it = self.cfg, self.items[j]
        ep = self.episodes[it.episode]
        T, L = ep.num_frames, cfg.horizon
        stop = min(it.end, T) if cfg.mode == "event" else T
        n = max(1, min(L, stop - t))  # valid action steps
        actions = np.empty((L, cfg.action_dim), np.float32)
        actions[:n] = ep.actions[t : t + n]
        actions[n:] = actions[n - 1]  # padding (masked out of the loss)
        valid = np.zeros(L, bool)
        end = np.zeros(L, np.float32)
        if cfg.mode == "event" and t >= stop:  # a done sample: over before any action, nothing to imitate
            end[:] = 1.0
        else:
            valid[:n] = True
            if cfg.mode == "event" and stop - t <= L:
                end[n - 1 :] = 1.0  # the event ends inside this chunk, at step n - 1
        fut_idx = [min(T - 1, t + int(round(n * (f + 1) / cfg.n_future))) for f in range(cfg.n_future)]
        goal = {} if self.goals is None else {"goal": self.goals[it.episode]}
        return goal | {
            "images": np.asarray(ep.frames[t]),
            "future_images": np.stack([np.asarray(ep.frames[i]) for i in fut_idx]),
            "proprio": np.asarray(ep.proprio[t], np.float32),
            "actions": actions,
            "action_valid": valid,
            "end_target": end,
            "instruction": self.embedding[it.texts[k]],
            "view_mask": self._cone_of[it.episode].view_mask(np.asarray(ep.cam_poses[t])),
        }

    def materialize(self, rows: Sequence[tuple[int, int, int]]) -> dict[str, np.ndarray]:
        """Stack samples into a batch of numpy arrays (B first)."""
        samples = [self.sample(*r) for r in rows]
        return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


def _texts(event) -> tuple[str, ...]:
    """An event's training texts: the broad generated set for registry keys, else its stored paraphrases."""
    try:
        texts = training_texts(event.key)
    except DataError:  # a key outside the registry (e.g. an imported dataset): its own texts
        return (event.caption, *event.paraphrases)
    return (event.caption, *[t for t in texts if t != event.caption], *[p for p in event.paraphrases if p not in texts])
