"""Unified mode: a small reasoner that emits K continuous latent reasoning states by Staircase Decoding.

The paper puts a VLM in front of the fixed-chunk denoiser; here it is a small transformer over the
observation latents and the TASK instruction embedding. Staircase Decoding: state k is read off a query
token after the reasoner has seen the context and states 1..k-1, and is appended, as a vector, to the
input of step k+1. The states are never discretized (no sampling, no argmax), so the denoiser's loss
reaches the reasoner's first layer (tests/model/test_model_unified.py checks it).

K is a config constant, so the loop is unrolled when traced: no data-dependent control flow.
"""

from __future__ import annotations

import torch
from torch import nn

from wallwm_edge.model.presets import ModelConfig


class Block(nn.Module):
    """Plain pre-LN transformer block (dense attention)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(B, S, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, H, S, Dh)
        x = x + self.proj(a.transpose(1, 2).reshape(B, S, D))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


class StaircaseReasoner(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        R = cfg.reasoner_width
        self.k = cfg.reasoning_states
        self.obs_in = nn.Linear(cfg.latent_dim, R)
        self.obs_pos = nn.Parameter(torch.randn(cfg.view_tokens, R) * 0.02)
        self.instr_in = nn.Linear(cfg.instruction_dim, R)
        self.state_in = nn.Linear(R, R)  # a produced state re-enters as an input vector (continuous)
        self.step_pos = nn.Parameter(torch.randn(self.k, R) * 0.02)
        self.query = nn.Parameter(torch.randn(R) * 0.02)
        self.blocks = nn.ModuleList(Block(R, max(1, R // 32)) for _ in range(cfg.reasoner_depth))
        self.norm = nn.LayerNorm(R)
        self.out = nn.Linear(R, R)

    def forward(self, obs_latents: torch.Tensor, task_instruction: torch.Tensor) -> torch.Tensor:
        """obs_latents (B, Vn, latent), task_instruction (B, 384) -> states (B, K, R)."""
        B = obs_latents.shape[0]
        ctx = torch.cat([self.instr_in(task_instruction)[:, None], self.obs_in(obs_latents) + self.obs_pos], dim=1)  # (B, 1+Vn, R)
        states: list[torch.Tensor] = []
        for k in range(self.k):  # the staircase: one more step of continuous state each time
            prev = [self.state_in(s)[:, None] + self.step_pos[i] for i, s in enumerate(states)]  # each (B, 1, R)
            q = (self.query + self.step_pos[k]).expand(B, 1, -1)
            h = torch.cat([ctx, *prev, q], dim=1)  # (B, 1+Vn+k+1, R)
            for blk in self.blocks:
                h = blk(h)
            states.append(self.out(self.norm(h[:, -1])))  # (B, R)
        return torch.stack(states, dim=1)  # (B, K, R)
