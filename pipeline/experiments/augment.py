"""Ordinary augmentation for the oversampling baseline: small random shifts and rotations."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def shift_rotate(
    images: np.ndarray, seed: int, max_shift_px: float = 2.0, max_degrees: float = 10.0
) -> np.ndarray:
    """Each uint8 image (N, H, W) shifted by up to ``max_shift_px`` and rotated by up to
    ``max_degrees`` (uniform, independent per image), bilinear, black fill."""
    if len(images) == 0:
        return images.copy()
    gen = torch.Generator().manual_seed(seed)
    n, h, w = images.shape
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * max_shift_px
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, 0, 2] = shift[:, 0] * 2 / w  # affine_grid works in [-1, 1] coordinates
    theta[:, 1, 2] = shift[:, 1] * 2 / h
    x = torch.from_numpy(images).float().unsqueeze(1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()
