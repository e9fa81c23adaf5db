"""Torch inference API for eval, distillation and export: `Policy.from_checkpoint(path).act(obs)`.

    obs = {
      "images":      (V, H, W, 3) uint8, views in the checkpoint's order (policy.views)
      "proprio":     (P,) float, raw (the checkpoint's normalizer is applied inside)
      "cam_poses":   (V, 4, 4) float, camera-to-base poses at this frame (optional: the rig's poses)
      "instruction": (384,) float sentence embedding, or a str (encoded with wallwm_edge.events.encoder)
                     event mode: the NEXT EVENT's instruction; unified mode: the TASK instruction
    }
    act(obs) -> {
      "actions":  (L, A) float32 raw end-effector actions for the whole horizon L = horizon
      "end_prob": (L,) float32, p(the event has ended by step l) (event mode; unified: 0 ... 0, 1)
      "length":   int, steps to execute (event mode: the end rule's length, at most max_exec; unified: L)
      "done":     bool, event mode: the current event is already over on this observation (then execute
                  nothing of this chunk and move to the next event); always False in unified mode
      "chunk":    (length, A) float32 = actions[:length]
    }
Both decisions come from the one end-of-event rule, wallwm_edge.events.end_rule.EndRule.

Tensor functions for export (no data-dependent Python control flow): `WallWM.sample(images, proprio,
instruction, mask, noise_video, noise_action, steps)` and `WallWM.denoise_step(...)`, see denoiser.py.
`policy.export_inputs(obs)` returns exactly the tensors `sample` takes for one observation, so an
exporter traces `model.sample` on them and feeds the same names at runtime:
    images (1, V, H, W, 3) uint8, proprio (1, P) float32, instruction (1, 384) float32,
    mask (1, S, S) bool, noise_video (1, F*V*Np, latent) float32, noise_action (1, L, A) float32.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from wallwm_edge.calibration.rig import Rig
from wallwm_edge.errors import ConfigError
from wallwm_edge.model.checkpoint import load_model
from wallwm_edge.events.end_rule import DEFAULT_END_RULE, EndRule
from wallwm_edge.model.denoiser import WallWM
from wallwm_edge.model.sightcone import SightCone


class Policy:
    def __init__(self, model: WallWM, header: dict | None = None, rig: Rig | None = None, steps: int | None = None, seed: int = 0,
                 end_rule: EndRule = DEFAULT_END_RULE):
        """`end_rule`: when the event is over and how much of a chunk to execute (event mode)."""
        self.end_rule = end_rule
        self.model = model.eval()
        self.cfg = model.cfg
        self.header = header or {}
        if rig is None and self.header.get("rig"):
            rig = Rig.from_json(self.header["rig"], where="checkpoint rig: ")
        if rig is None:
            raise ConfigError("no rig: the checkpoint stores none, pass rig= (a wallwm-rig/1 Rig)")
        self.cone = SightCone(rig, self.cfg.views, self.cfg.patch, self.cfg.near, self.cfg.far, self.cfg.image_size)
        self.steps = int(steps or self.cfg.flow_steps)
        self.generator = torch.Generator().manual_seed(seed)
        self._text_cache: dict[str, np.ndarray] = {}
        self._encoder = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, rig: Rig | None = None, steps: int | None = None, seed: int = 0,
                        end_rule: EndRule = DEFAULT_END_RULE) -> "Policy":
        model, header = load_model(path)
        return cls(model, header, rig=rig, steps=steps, seed=seed, end_rule=end_rule)

    def reseed(self, seed: int) -> None:
        """Restart the noise stream: the same observations then give the same chunks (paired evaluation)."""
        self.generator.manual_seed(int(seed))

    @property
    def views(self) -> list[str]:
        return list(self.cfg.views)

    # ------------------------------------------------------------------ input checks
    def embed(self, instruction) -> np.ndarray:
        """(384,) float32 from an embedding or a text (cached per text)."""
        if isinstance(instruction, str):
            if instruction not in self._text_cache:
                if self._encoder is None:
                    from wallwm_edge.events.encoder import CaptionEncoder

                    self._encoder = CaptionEncoder()
                self._text_cache[instruction] = np.asarray(self._encoder.encode([instruction]), np.float32).reshape(-1)
            instruction = self._text_cache[instruction]
        e = np.asarray(instruction, np.float32).reshape(-1)
        if e.shape != (self.cfg.instruction_dim,):
            raise ConfigError(f"instruction embedding has size {e.size}, the checkpoint expects {self.cfg.instruction_dim}")
        return e

    def check_obs(self, obs: dict) -> None:
        c = self.cfg
        img = np.asarray(obs["images"])
        if img.ndim != 4 or img.shape[-1] != 3:
            raise ConfigError(f"obs images have shape {img.shape}, expected (V, H, W, 3) = ({c.num_views}, {c.image_size[0]}, {c.image_size[1]}, 3)")
        if img.shape[0] != c.num_views:
            raise ConfigError(f"checkpoint expects {c.num_views} views {self.views}, obs images have {img.shape[0]} views")
        if tuple(img.shape[1:3]) != tuple(c.image_size):
            raise ConfigError(f"checkpoint expects images of {c.image_size[0]}x{c.image_size[1]}, obs images are {img.shape[1]}x{img.shape[2]}")
        prop = np.asarray(obs["proprio"]).reshape(-1)
        if prop.size != c.proprio_dim:
            raise ConfigError(f"checkpoint expects proprio dim {c.proprio_dim}, obs proprio has {prop.size}")

    # ------------------------------------------------------------------ inference
    def export_inputs(self, obs: dict) -> dict[str, torch.Tensor]:
        """The exact tensors WallWM.sample takes for this observation (batch of 1), noise drawn here."""
        self.check_obs(obs)
        c = self.cfg
        view_mask = torch.from_numpy(self.cone.view_mask(obs.get("cam_poses")))
        return {
            "images": torch.from_numpy(np.array(obs["images"], dtype=np.uint8))[None],  # a writable copy
            "proprio": torch.as_tensor(np.asarray(obs["proprio"], np.float32).reshape(1, -1)),
            "instruction": torch.from_numpy(self.embed(obs["instruction"]))[None],
            "mask": self.model.full_mask(view_mask),
            "noise_video": torch.randn(1, c.n_future * c.view_tokens, c.latent_dim, generator=self.generator),
            "noise_action": torch.randn(1, c.horizon, c.action_dim, generator=self.generator),
        }

    @torch.no_grad()
    def act(self, obs: dict) -> dict:
        x = self.export_inputs(obs)
        actions, end_prob, _ = self.model.sample(**x, steps=self.steps)
        actions = actions[0].numpy().astype(np.float32)
        if self.cfg.mode == "event":
            end_prob = end_prob[0].numpy().astype(np.float32)
            length, done = self.end_rule.length(end_prob), self.end_rule.is_done(end_prob)
        else:  # fixed chunks: the termination head is not trained
            end_prob = np.zeros(self.cfg.horizon, np.float32)
            end_prob[-1] = 1.0
            length, done = self.cfg.horizon, False
        return {"actions": actions, "end_prob": end_prob, "length": length, "done": done, "chunk": actions[:length]}
