"""Turn (seed, labels) into images with a torch generator, following the latent contract.

The latent comes from ``models.contract.latent_for_seed`` (numpy, CPU) so that the images here are
the ones ONNX Runtime and TorchServe produce for the same request.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.contract import latent_for_seed
from models.netconfig import GANConfig


@torch.inference_mode()
def generate(
    generator: nn.Module,
    cfg: GANConfig,
    seed: int,
    labels: np.ndarray,
    device: torch.device | str = "cpu",
    batch_size: int = 1000,
) -> np.ndarray:
    """Images float32 (N, C, 28, 28) in [-1, 1] for ``labels`` (int64[N]) from ``seed``.

    Runs the generator in eval mode (batch-norm running statistics) and restores its mode.
    """
    n = len(labels)
    z = latent_for_seed(seed, n, cfg.latent_dim)
    was_training = generator.training
    generator.eval()
    out = []
    try:
        for start in range(0, n, batch_size):
            zb = torch.from_numpy(z[start : start + batch_size]).to(device)
            lb = torch.from_numpy(labels[start : start + batch_size]).to(device)
            images = generator(zb, lb if cfg.conditional else None)
            out.append(images.float().cpu().numpy())
    finally:
        generator.train(was_training)
    size = cfg.image_size
    return np.concatenate(out) if out else np.zeros((0, cfg.channels, size, size), np.float32)
