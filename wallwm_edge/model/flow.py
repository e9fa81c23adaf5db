"""Rectified flow: straight paths from noise (t = 0) to data (t = 1), Euler sampling.

    x_t = (1 - t) * noise + t * data        target velocity  v = data - noise
    sample: x <- x + (1 / steps) * v(x, t),  t = 0, 1/steps, ..., (steps - 1)/steps

Video latents and actions share t within a sample, so the two towers denoise the same moment of one
trajectory of the joint state.
"""

from __future__ import annotations

import torch


def interpolate(data: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t for data/noise (B, ...) and t (B,)."""
    t = t.reshape(-1, *([1] * (data.dim() - 1)))
    return (1 - t) * noise + t * data


def velocity_target(data: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return data - noise


def time_grid(steps: int) -> list[float]:
    """The Euler times for `steps` steps; a Python list, so a traced loop is unrolled."""
    return [i / steps for i in range(steps)]
