"""The model side of the server: one forward for a whole batch of requests (torch).

Two kinds of request are served from one loaded checkpoint:
    act     openpi's `infer`: one observation -> one action chunk. Concurrent observations are stacked into
            one `WallWM.sample` call. The noise comes from the request's "seed" when it sends one (then
            the chunk equals `Policy.from_checkpoint(ckpt, seed=seed).act(obs)`), else from the server's
            own stream (seeded by `serve --seed`).
    label   distillation: a batch of training samples with the client's noise -> the teacher's Euler
            trajectory at the student's grid (`teacher_trajectory`, the one definition distill.py uses).
The client sends the noise so that the student later trains from exactly the noise that was labelled.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from wallwm_edge.data.episode import sha256_file
from wallwm_edge.errors import ConfigError
from wallwm_edge.model.checkpoint import MODEL_FILE
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.serve.spec import PROTOCOL

SHARED_BUFFERS = ("ae.", "action_norm.", "proprio_norm.")  # what a student shares with its teacher (distill.py)
MAX_K = 1000  # teacher Euler steps per label request: a bound, so a typo cannot occupy the server for hours


@torch.no_grad()
def teacher_trajectory(teacher: WallWM, batch: dict, noise_video, noise_action, K: int, S: int):
    """Euler-integrate the teacher for K steps; return its states at t = j/S, j = 0..S, and its final end logit.

    batch: images (B, V, H, W, 3) uint8, proprio (B, P), instruction (B, 384), view_mask (B, Vn, Vn) bool.
    Returns traj_video (B, S+1, F*Vn, latent), traj_action (B, S+1, L, A) (normalised), end_logit (B, L).
    """
    if S < 1 or K % S:
        raise ConfigError(f"teacher steps {K} must be a multiple of student steps {S} (pass --teacher-steps)")
    obs_h, cond_h, c = teacher.prepare(batch["images"], batch["proprio"].float(), batch["instruction"].float())
    mask = teacher.full_mask(batch["view_mask"])
    xv, xa = noise_video, noise_action
    tv, ta = [xv], [xa]
    end_logit = None
    for i in range(K):
        t = torch.full((xa.shape[0],), i / K)
        vv, va, end_logit = teacher.denoise_step(obs_h, cond_h, c, xv, xa, t, mask)
        xv, xa = xv + vv / K, xa + va / K
        if (i + 1) % (K // S) == 0:
            tv.append(xv)
            ta.append(xa)
    return torch.stack(tv, 1), torch.stack(ta, 1), end_logit


class Backend:
    def __init__(self, checkpoint: str | os.PathLike, steps: int | None = None, seed: int = 0):
        from wallwm_edge.model.policy import Policy

        p = Path(checkpoint)
        p = p / MODEL_FILE if p.is_dir() else p
        if not p.is_file():
            raise ConfigError(f"{checkpoint}: checkpoint not found (a run folder or its {MODEL_FILE})")
        self.policy = Policy.from_checkpoint(p, steps=steps, seed=seed)
        self.model, self.cfg, self.header = self.policy.model, self.policy.cfg, self.policy.header
        self.path, self.sha256 = p, sha256_file(p)[:16]

    def metadata(self, max_batch: int) -> dict:
        c = self.cfg
        return {
            "protocol": PROTOCOL, "server": "wallwm-edge",
            "views": list(c.views), "image_size": list(c.image_size), "action_dim": c.action_dim, "proprio_dim": c.proprio_dim,
            "instruction_dim": c.instruction_dim, "horizon": c.horizon, "mode": c.mode, "flow_steps": self.policy.steps,
            "view_tokens": c.view_tokens, "config": c.to_json(), "max_batch": max_batch, "requests": ["act", "label", "shared_state"],
            "checkpoint": {"path": str(self.path), "sha256": self.sha256, "step": self.header.get("step"), "preset": c.name,
                           "params": sum(p.numel() for p in self.model.parameters()),
                           "train_config": self.header.get("train_config", {}), "text_encoder": self.header.get("text_encoder")},
        }

    def shared_state(self) -> dict:
        return {k: v.numpy().copy() for k, v in self.model.state_dict().items() if k.startswith(SHARED_BUFFERS)}

    # ------------------------------------------------------------------ act
    def prepare_act(self, obs: dict) -> dict[str, torch.Tensor]:
        """One observation's tensors (batch of 1), checked; the noise from obs["seed"] or the server's stream.
        Not thread-safe (it swaps the policy's generator): the server prepares and runs on one worker thread."""
        missing = [k for k in ("images", "proprio", "instruction") if k not in obs]
        if missing:
            raise ConfigError(f"observation lacks {missing}; it needs images (V, H, W, 3) uint8, proprio (P,), instruction")
        generator = self.policy.generator
        try:
            if "seed" in obs:
                generator = torch.Generator().manual_seed(int(obs["seed"]))
            x = self.policy_inputs(obs, generator)
        except (TypeError, ValueError, KeyError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"malformed observation ({type(e).__name__}: {e})") from None
        return x

    def policy_inputs(self, obs: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        saved = self.policy.generator
        self.policy.generator = generator  # Policy.export_inputs draws video then action noise from it
        try:
            return self.policy.export_inputs(obs)
        finally:
            self.policy.generator = saved

    @torch.no_grad()
    def act(self, items: list[dict[str, torch.Tensor]]) -> list[dict]:
        x = {k: torch.cat([it[k] for it in items]) for k in items[0]}
        actions, end_prob, _ = self.model.sample(**x, steps=self.policy.steps)
        out = []
        for a, e in zip(actions.numpy().astype(np.float32), end_prob.numpy().astype(np.float32)):
            if self.cfg.mode == "event":
                length, done = self.policy.end_rule.length(e), self.policy.end_rule.is_done(e)
            else:  # fixed chunks: the termination head is not trained (as Policy.act)
                e = np.zeros(self.cfg.horizon, np.float32)
                e[-1] = 1.0
                length, done = self.cfg.horizon, False
            out.append({"actions": a, "end_prob": e, "length": int(length), "done": bool(done), "chunk": a[:length]})
        return out

    # ------------------------------------------------------------------ label
    def prepare_label(self, msg: dict) -> tuple[tuple, dict[str, torch.Tensor]]:
        """((K, S), tensors) of a label request, every shape checked against the model."""
        c = self.cfg
        try:
            K, S = int(msg["K"]), int(msg["S"])
            B = int(np.asarray(msg["images"]).shape[0])
            want = {"images": (B, c.num_views, *c.image_size, 3), "proprio": (B, c.proprio_dim), "instruction": (B, c.instruction_dim),
                    "view_mask": (B, c.view_tokens, c.view_tokens), "noise_video": (B, c.n_future * c.view_tokens, c.latent_dim),
                    "noise_action": (B, c.horizon, c.action_dim)}
            x = {}
            for k, shape in want.items():
                a = np.asarray(msg[k])
                if tuple(a.shape) != shape:
                    raise ConfigError(f"label request: {k} has shape {list(a.shape)}, the served model expects {list(shape)}")
                x[k] = torch.from_numpy(a.astype(np.uint8 if k == "images" else bool if k == "view_mask" else np.float32))
        except KeyError as e:
            raise ConfigError(f"label request lacks {e}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"malformed label request ({type(e).__name__}: {e})") from None
        if not (1 <= S <= K <= MAX_K) or K % S:
            raise ConfigError(f"label request: teacher steps K={K} must be a multiple of student steps S={S}, 1 <= S <= K <= {MAX_K}")
        return (K, S), x

    @torch.no_grad()
    def label(self, key: tuple, items: list[dict[str, torch.Tensor]]) -> list[dict]:
        K, S = key
        x = {k: torch.cat([it[k] for it in items]) for k in items[0]}
        tv, ta, end = teacher_trajectory(self.model, x, x["noise_video"], x["noise_action"], K, S)
        out, lo = [], 0
        for it in items:
            hi = lo + len(it["images"])
            out.append({"traj_video": tv[lo:hi].numpy(), "traj_action": ta[lo:hi].numpy(), "end_logit": end[lo:hi].numpy()})
            lo = hi
        return out
