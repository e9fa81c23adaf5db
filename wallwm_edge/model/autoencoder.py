"""Video latents: a per-patch linear (PCA) autoencoder fitted on the dataset.

Why PCA and not a conv VAE: on a 2-core CPU the autoencoder must cost nothing next to the denoiser, be
fitted in seconds, and export to ONNX as one matmul. A whitened PCA over 16x16x3 patches is exactly
that: the encoder is `(patch - mean) @ components.T / scale`, the decoder its transpose, and whitening
gives unit-variance latents, which is what rectified flow wants for its targets. `fit` returns the
fraction of pixel variance kept; the trainer logs it and stores it in the checkpoint. The cost is no perceptual prior; the world-model head only needs to carry scene dynamics, not pixels.

Token order is view-major, then patch rows top to bottom, columns left to right: token index
`v * Np + r * (W // p) + c`, the same order as wallwm_edge.ops.sightcone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, V, H, W, 3) uint8 or float in [0, 255] -> (B, V * Np, 3 * p * p) float in [0, 1]."""
    B, V, H, W, C = images.shape
    x = images.to(torch.float32) / 255.0
    x = x.reshape(B, V, H // patch, patch, W // patch, patch, C)  # (B, V, R, p, Cc, p, 3)
    x = x.permute(0, 1, 2, 4, 3, 5, 6)  # (B, V, R, Cc, p, p, 3)
    return x.reshape(B, V * (H // patch) * (W // patch), patch * patch * C)


def unpatchify(patches: torch.Tensor, views: int, image_size: tuple[int, int], patch: int) -> torch.Tensor:
    """Inverse of patchify: (B, V * Np, 3 p p) in [0, 1] -> (B, V, H, W, 3) float in [0, 1]."""
    B = patches.shape[0]
    H, W = image_size
    x = patches.reshape(B, views, H // patch, W // patch, patch, patch, 3)
    x = x.permute(0, 1, 2, 4, 3, 5, 6)  # (B, V, R, p, Cc, p, 3)
    return x.reshape(B, views, H, W, 3)


class PatchAutoencoder(nn.Module):
    """Whitened per-patch PCA. Buffers only (no gradients): the denoiser learns on top of fixed latents."""

    def __init__(self, patch: int, latent_dim: int):
        super().__init__()
        self.patch = patch
        self.latent_dim = latent_dim
        d = 3 * patch * patch
        # An unfitted autoencoder is a fixed random orthogonal projection, so tests without data still run.
        q, _ = torch.linalg.qr(torch.randn(d, latent_dim, generator=torch.Generator().manual_seed(0)))
        self.register_buffer("mean", torch.full((d,), 0.5))
        self.register_buffer("components", q.T.contiguous())  # (latent, d), orthonormal rows
        self.register_buffer("scale", torch.full((latent_dim,), 0.1))  # std of each latent before whitening

    @torch.no_grad()
    def fit(self, patches: np.ndarray | torch.Tensor) -> float:
        """Fit on (N, 3 p p) patches in [0, 1]; returns the explained variance fraction (0-1)."""
        x = torch.as_tensor(np.asarray(patches), dtype=torch.float64)
        mean = x.mean(0)
        cov = (x - mean).T @ (x - mean) / max(1, len(x) - 1)  # (d, d)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
        k = self.latent_dim
        self.mean.copy_(mean.float())
        self.components.copy_(evecs[:, :k].T.float())
        # Floor the scale so a constant patch dimension does not blow up its whitened latent.
        self.scale.copy_(evals[:k].sqrt().clamp_min(1e-3).float())
        return float(evals[:k].sum() / evals.sum().clamp_min(1e-12))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, V, H, W, 3) uint8 -> (B, V * Np, latent) whitened latents."""
        p = patchify(images, self.patch)
        return ((p - self.mean) @ self.components.T) / self.scale

    def decode(self, latents: torch.Tensor, views: int, image_size: tuple[int, int]) -> torch.Tensor:
        """(B, V * Np, latent) -> (B, V, H, W, 3) float in [0, 1] (clipped)."""
        p = (latents * self.scale) @ self.components + self.mean
        return unpatchify(p, views, image_size, self.patch).clamp(0, 1)
