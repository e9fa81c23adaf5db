"""WALL-WM: the layer-coupled video-action denoiser (readable top to bottom).

Two towers with their own weights and ONE attention per layer over the concatenation of their tokens:
- the video tower holds the current observation tokens and the noisy FUTURE video latents of every view
  (V * Np tokens per frame), with the sight-cone mask between view tokens;
- the action tower holds the instruction token, the proprio token, in unified mode the K reasoning
  states, and the L noisy end-effector action tokens.
Each tower attends to the other's tokens in every layer (the coupling); weights (norms, qkv, MLP,
adaLN) are per tower, as in a mixture of transformers. The flow time and the instruction modulate every
block through adaLN-zero, so each block is the identity at initialisation.

Heads: video velocity (latent), action velocity (A), and in event mode a termination logit per action
token: target 1 from the event's last step on, and 1 everywhere on frames after the event's end (the
event is over); wallwm_edge.events.end_rule turns p_end into "done" and the executed length.

Tensor interface (all normalisation inside, raw values in and out; what export traces):
    prepare(images, proprio, instruction)                      -> (obs_h, cond_h, c)
        images (B, V, H, W, 3) uint8, proprio (B, P) raw, instruction (B, 384)
        obs_h (B, Vn, D) observation tokens, cond_h (B, 2 + K, D) action-side condition tokens, c (B, D)
    denoise_step(obs_h, cond_h, c, x_video, x_action, t, mask) -> (v_video, v_action, end_logit)
        x_video (B, F*Vn, latent), x_action (B, L, A) normalised, t (B,), mask (B, S, S) bool
    sample(images, proprio, instruction, mask, noise_video, noise_action, steps)
                                                               -> (actions (B, L, A) raw, end_prob (B, L), video (B, F*Vn, latent))
    S = (1 + F) * Vn + 2 + K + L  (K = 0 in event mode); see attention.py for the layout.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from wallwm_edge.model.attention import expand_view_mask, masked_attention
from wallwm_edge.model.autoencoder import PatchAutoencoder
from wallwm_edge.model.flow import interpolate, time_grid, velocity_target
from wallwm_edge.model.normalizer import Normalizer
from wallwm_edge.model.presets import ModelConfig
from wallwm_edge.model.reasoner import StaircaseReasoner


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def timestep_embedding(t: torch.Tensor, dim: int = 128) -> torch.Tensor:
    """(B,) in [0, 1] -> (B, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TowerLayer(nn.Module):
    """One tower's weights within a coupled layer: adaLN, qkv, output projection and MLP."""

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)  # adaLN-zero: gates start at 0, the layer starts as identity
        nn.init.zeros_(self.ada.bias)

    def mlp(self, x: torch.Tensor, shift, scale, gate) -> torch.Tensor:
        return x + gate[:, None] * self.fc2(F.gelu(self.fc1(modulate(self.norm2(x), shift, scale))))


class CoupledLayer(nn.Module):
    """Video tower + action tower sharing one masked attention over all their tokens."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.video = TowerLayer(dim, mlp_ratio)
        self.action = TowerLayer(dim, mlp_ratio)

    def forward(self, xv: torch.Tensor, xa: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, Sv, D = xv.shape
        Sa, H = xa.shape[1], self.heads
        mv = self.video.ada(F.silu(c)).chunk(6, dim=-1)  # each (B, D)
        ma = self.action.ada(F.silu(c)).chunk(6, dim=-1)
        qkv_v = self.video.qkv(modulate(self.video.norm1(xv), mv[0], mv[1]))  # (B, Sv, 3D)
        qkv_a = self.action.qkv(modulate(self.action.norm1(xa), ma[0], ma[1]))  # (B, Sa, 3D)
        qkv = torch.cat([qkv_v, qkv_a], dim=1).reshape(B, Sv + Sa, 3, H, D // H).permute(2, 0, 3, 1, 4)
        out = masked_attention(qkv[0], qkv[1], qkv[2], mask)  # (B, H, S, Dh): the coupling
        out = out.transpose(1, 2).reshape(B, Sv + Sa, D)
        xv = xv + mv[2][:, None] * self.video.proj(out[:, :Sv])
        xa = xa + ma[2][:, None] * self.action.proj(out[:, Sv:])
        return self.video.mlp(xv, mv[3], mv[4], mv[5]), self.action.mlp(xa, ma[3], ma[4], ma[5])


class WallWM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        if cfg.num_views < 1:
            raise ValueError("ModelConfig has no views: build it with presets.resolve(preset, views=...)")
        self.cfg = cfg
        D, Vn, L = cfg.width, cfg.view_tokens, cfg.horizon
        self.n_cond = 2 + (cfg.reasoning_states if cfg.mode == "unified" else 0)  # instruction, proprio, K states
        self.ae = PatchAutoencoder(cfg.patch, cfg.latent_dim)
        self.action_norm = Normalizer(cfg.action_dim)
        self.proprio_norm = Normalizer(cfg.proprio_dim)
        # ---- inputs
        self.obs_in = nn.Linear(cfg.latent_dim, D)
        self.video_in = nn.Linear(cfg.latent_dim, D)
        self.video_pos = nn.Parameter(torch.randn(1 + cfg.n_future, Vn, D) * 0.02)  # (frame, view*patch, D)
        self.action_in = nn.Linear(cfg.action_dim, D)
        self.action_pos = nn.Parameter(torch.randn(L, D) * 0.02)
        self.instr_in = nn.Linear(cfg.instruction_dim, D)
        self.proprio_in = nn.Linear(cfg.proprio_dim, D)
        self.cond_pos = nn.Parameter(torch.randn(self.n_cond, D) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(128, D), nn.SiLU(), nn.Linear(D, D))
        self.instr_mod = nn.Linear(cfg.instruction_dim, D)  # instruction also modulates every block
        if cfg.mode == "unified":
            self.reasoner = StaircaseReasoner(cfg)
            self.state_in = nn.Linear(cfg.reasoner_width, D)
        # ---- coupled layers
        self.layers = nn.ModuleList(CoupledLayer(D, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        # ---- heads
        self.video_norm = nn.LayerNorm(D)
        self.video_out = nn.Linear(D, cfg.latent_dim)
        self.action_norm_out = nn.LayerNorm(D)
        self.action_out = nn.Linear(D, cfg.action_dim)
        self.end_head = nn.Linear(D, 1)

    # ------------------------------------------------------------------ tensor interface
    def seq_len(self) -> int:
        c = self.cfg
        return (1 + c.n_future) * c.view_tokens + self.n_cond + c.horizon

    def full_mask(self, view_mask: torch.Tensor) -> torch.Tensor:
        """(B, Vn, Vn) or (Vn, Vn) sight-cone mask -> (B, S, S) mask for denoise_step."""
        return expand_view_mask(view_mask, 1 + self.cfg.n_future, self.n_cond + self.cfg.horizon)

    def prepare(self, images: torch.Tensor, proprio: torch.Tensor, instruction: torch.Tensor):
        """Everything that does not change across denoising steps (runs once per action chunk)."""
        obs_lat = self.ae.encode(images)  # (B, Vn, latent)
        obs_h = self.obs_in(obs_lat) + self.video_pos[0]  # (B, Vn, D)
        cond = [self.instr_in(instruction)[:, None], self.proprio_in(self.proprio_norm.normalize(proprio))[:, None]]
        if self.cfg.mode == "unified":
            cond.append(self.state_in(self.reasoner(obs_lat, instruction)))  # (B, K, D)
        cond_h = torch.cat(cond, dim=1) + self.cond_pos  # (B, 2 + K, D)
        return obs_h, cond_h, self.instr_mod(instruction)  # c: (B, D)

    def denoise_step(self, obs_h, cond_h, c, x_video, x_action, t, mask):
        """One velocity evaluation. No Python control flow depends on tensor values."""
        return self._denoise(obs_h, cond_h, c, x_video, x_action, t, mask)[:3]

    def _denoise(self, obs_h, cond_h, c, x_video, x_action, t, mask):
        """denoise_step plus the action tower's hidden tokens (B, 2+K+L, D) after the last layer."""
        B, Vn = obs_h.shape[0], self.cfg.view_tokens
        fut = self.video_in(x_video).reshape(B, self.cfg.n_future, Vn, -1) + self.video_pos[1:]  # (B, F, Vn, D)
        xv = torch.cat([obs_h, fut.reshape(B, -1, fut.shape[-1])], dim=1)  # (B, (1+F)Vn, D)
        xa = torch.cat([cond_h, self.action_in(x_action) + self.action_pos], dim=1)  # (B, 2+K+L, D)
        cc = c + self.time_mlp(timestep_embedding(t))  # (B, D)
        for layer in self.layers:
            xv, xa = layer(xv, xa, cc, mask)
        v_video = self.video_out(self.video_norm(xv[:, Vn:]))  # (B, F*Vn, latent)
        ha = self.action_norm_out(xa[:, self.n_cond :])  # (B, L, D)
        return v_video, self.action_out(ha), self.end_head(ha).squeeze(-1), xa  # (B, L, A), (B, L)

    def sample(self, images, proprio, instruction, mask, noise_video, noise_action, steps: int):
        """Euler-integrate the flow from the given noise; returns raw actions, p_end and video latents."""
        obs_h, cond_h, c = self.prepare(images, proprio, instruction)
        xv, xa = noise_video, noise_action
        end_logit = torch.zeros(xa.shape[:2], dtype=xa.dtype, device=xa.device)
        for t0 in time_grid(steps):  # unrolled when traced
            t = torch.full((xa.shape[0],), t0, dtype=xa.dtype, device=xa.device)
            vv, va, end_logit = self.denoise_step(obs_h, cond_h, c, xv, xa, t, mask)
            xv, xa = xv + vv / steps, xa + va / steps
        return self.action_norm.unnormalize(xa), torch.sigmoid(end_logit), xv

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict, generator: torch.Generator | None = None, hidden: bool = False) -> dict:
        return self.loss(batch, generator, hidden)

    def draw_noise(self, B: int, generator: torch.Generator | None = None) -> dict:
        """Flow time and noise for B samples. The trainer draws them for the GLOBAL batch and slices,
        so multi-process and resumed runs see exactly the noise a single process would."""
        c = self.cfg
        return {
            "t": torch.rand(B, generator=generator),
            "noise_video": torch.randn(B, c.n_future * c.view_tokens, c.latent_dim, generator=generator),
            "noise_action": torch.randn(B, c.horizon, c.action_dim, generator=generator),
        }

    def loss(self, batch: dict, generator: torch.Generator | None = None, hidden: bool = False) -> dict:
        """Joint rectified-flow loss. batch (collated training samples):
        images (B,V,H,W,3) u8, future_images (B,F,V,H,W,3) u8, proprio (B,P), actions (B,L,A) raw,
        action_valid (B,L) bool, end_target (B,L) float, instruction (B,384), view_mask (B,Vn,Vn) bool,
        optionally t (B,), noise_video, noise_action (else drawn here from `generator`).
        Every term is a mean over samples of a per-sample mean, so equal shards average to the whole.
        hidden: also return "instruction_token" (B, D), the action tower's instruction token after the last
        layer (the trainer's auxiliary probes read what the action tower gathered from the views there).
        """
        cfg = self.cfg
        B = batch["images"].shape[0]
        with torch.no_grad():
            fut = batch["future_images"].flatten(0, 1)  # (B*F, V, H, W, 3)
            x1_video = self.ae.encode(fut).reshape(B, cfg.n_future * cfg.view_tokens, cfg.latent_dim)
            x1_action = self.action_norm.normalize(batch["actions"].float())  # (B, L, A)
        noise = batch if "t" in batch else self.draw_noise(B, generator)
        dev = x1_action.device
        t, n_video, n_action = (noise[k].to(dev) for k in ("t", "noise_video", "noise_action"))
        obs_h, cond_h, c = self.prepare(batch["images"], batch["proprio"].float(), batch["instruction"].float())
        mask = self.full_mask(batch["view_mask"])
        vv, va, end_logit, xa = self._denoise(
            obs_h, cond_h, c, interpolate(x1_video, n_video, t), interpolate(x1_action, n_action, t), t, mask
        )
        valid = batch["action_valid"].float()  # (B, L)
        l_video = F.mse_loss(vv, velocity_target(x1_video, n_video))
        per_step = ((va - velocity_target(x1_action, n_action)) ** 2).mean(-1)  # (B, L)
        l_action = ((per_step * valid).sum(1) / valid.sum(1).clamp_min(1.0)).mean()
        total = cfg.loss_video * l_video + cfg.loss_action * l_action
        out = {"video": l_video, "action": l_action}
        if cfg.mode == "event":
            l_end = F.binary_cross_entropy_with_logits(end_logit, batch["end_target"].float())
            total = total + cfg.loss_end * l_end
            out["end"] = l_end
        out["loss"] = total
        if hidden:
            out["instruction_token"] = xa[:, 0]
        return out

