"""What the closed loop drives: a trained checkpoint, or a reference "policy" that validates the metric.

Every actor answers `act(obs, instruction) -> (actions (L, A) float32, end_prob (L,) float32)`: a chunk
and p(the current event is over by step l). The closed loop turns end_prob into "the event is done" and
"execute this many steps" with the one end-of-event rule (wallwm_edge.events.end_rule). `mode` says which
instruction it wants: "event" (the next event) or "unified" (the whole task). `reset(env, tracker, seed)`
starts an episode; a checkpoint's noise stream restarts from `seed` there, so every condition of a
comparison sees the same noise on the same scene (paired evaluation).

- CheckpointActor: `wallwm_edge.model.policy.Policy` (torch), checked against the env it will drive.
- ExpertActor: Meta-World's scripted expert, one step per call; its p_end is 1 once the Task Progress
  tracker has latched one more event than when the event began, so a perfect run exercises the planner.
- NoopActor: zero motion, gripper open, p_end 0 (the planner's safety cap moves it along).
The expert should score ~100 Task Progress and the no-op ~0: tests/eval holds the metric to that.
"""

from __future__ import annotations

import zlib

import numpy as np

from wallwm_edge.errors import ConfigError


class NoopActor:
    mode = "event"
    views: tuple[str, ...] | None = None
    name = "noop"
    needs_images = False  # state-free: the env skips rendering

    def __init__(self, action_dim: int = 4):
        self.action_dim = action_dim

    def reset(self, env, tracker, seed: int = 0) -> None:
        pass

    def act(self, obs: dict, instruction: str) -> tuple[np.ndarray, np.ndarray]:
        a = np.zeros((10, self.action_dim), np.float32)
        a[:, -1] = -1.0  # gripper open
        return a, np.zeros(10, np.float32)


class ExpertActor:
    """The scripted expert of the env's task; ignores the instruction (it knows the task)."""

    mode = "event"
    views: tuple[str, ...] | None = None
    name = "expert"
    action_dim = 4
    needs_images = False  # acts on simulator state: the env skips rendering

    def reset(self, env, tracker, seed: int = 0) -> None:
        self.env, self.tracker = env, tracker
        self._instruction, self._count = None, 0

    def act(self, obs: dict, instruction: str) -> tuple[np.ndarray, np.ndarray]:
        if instruction != self._instruction:  # a new event: remember how many were done when it began
            self._instruction, self._count = instruction, self.tracker.completed
        done = self.tracker.completed > self._count
        return self.env.expert_action()[None], np.array([1.0 if done else 0.0], np.float32)


class CheckpointActor:
    """A trained WALL-WM checkpoint through the Policy API (event or unified mode, from its config)."""

    name = "checkpoint"
    needs_images = True

    def __init__(self, path, flow_steps: int | None = None, seed: int = 0, embed=None):
        """`embed`: texts -> (N, 384) embeddings; None = the policy's sentence encoder (all-MiniLM-L6-v2).
        A checkpoint trained with `--text-encoder hash` must be evaluated with the hash embedder."""
        from wallwm_edge.model.policy import Policy

        self.path = str(path)
        self.seed = int(seed)
        self.embed = embed
        self._cache: dict[str, np.ndarray] = {}
        self.policy = Policy.from_checkpoint(path, steps=flow_steps, seed=seed)
        cfg = self.policy.cfg
        self.mode = cfg.mode
        self.views = tuple(cfg.views)
        self.action_dim = cfg.action_dim
        self.image_size = tuple(cfg.image_size)
        self.config = cfg

    def check_env(self, views, action_dim: int, proprio_dim: int, image_size) -> None:
        """ConfigError naming what differs between this checkpoint and the env it is about to drive."""
        self.config.check_data(views=tuple(views), action_dim=action_dim, proprio_dim=proprio_dim, image_size=tuple(image_size),
                               where="the evaluation env")

    def reset(self, env, tracker, seed: int = 0) -> None:
        self.policy.reseed(zlib.crc32(f"{seed}/{self.seed}".encode()))

    def act(self, obs: dict, instruction: str) -> tuple[np.ndarray, np.ndarray]:
        if self.embed is not None:
            if instruction not in self._cache:
                self._cache[instruction] = np.asarray(self.embed([instruction]), np.float32).reshape(-1)
            instruction = self._cache[instruction]
        out = self.policy.act({"images": obs["images"], "proprio": obs["proprio"], "cam_poses": obs["cam_poses"],
                               "instruction": instruction})
        actions = np.asarray(out["actions"], np.float32)
        if actions.ndim != 2 or actions.shape[1] != self.action_dim or len(actions) == 0:
            raise ConfigError(f"policy returned actions of shape {actions.shape}, expected (L>0, {self.action_dim})")
        return actions, np.asarray(out["end_prob"], np.float32)


def make_actor(spec: str, flow_steps: int | None = None, seed: int = 0, text_encoder: str = "minilm"):
    """'expert', 'noop', or a checkpoint path (file or run folder)."""
    if spec == "expert":
        return ExpertActor()
    if spec == "noop":
        return NoopActor()
    embed = None
    if text_encoder == "hash":
        from wallwm_edge.train.samples import hash_embedder

        embed = hash_embedder()
    return CheckpointActor(spec, flow_steps=flow_steps, seed=seed, embed=embed)
