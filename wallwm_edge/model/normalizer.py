"""Mean/std normalizer for actions and proprio, stored inside the model (so it travels with every
checkpoint and every exported graph: raw values in, raw actions out)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MIN_STD = 1e-2  # a dimension that never moves (e.g. a locked gripper) must not blow up


class Normalizer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, values: np.ndarray) -> dict:
        """values (N, dim); sets the statistics and returns them as JSON-able lists."""
        v = np.asarray(values, np.float64).reshape(-1, self.mean.numel())
        self.mean.copy_(torch.as_tensor(v.mean(0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(v.std(0), MIN_STD), dtype=torch.float32))
        return self.stats()

    def stats(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean
