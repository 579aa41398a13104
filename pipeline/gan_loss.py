"""The GAN losses on the discriminator's logits: binary cross entropy or the hinge loss.

Logits arrive in fp32 (the trainer casts them out of any bf16 autocast), so the losses are
computed in fp32 whatever precision the networks run in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.train_config import TrainConfig


def discriminator_loss(
    cfg: TrainConfig, real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> torch.Tensor:
    """BCE: maximise log D(x) + log(1 - D(G(z))), real targets smoothed to ``real_label``.
    Hinge: a margin of 1 on either side; logits beyond it stop pushing D further."""
    if cfg.loss == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    real_target = torch.full_like(real_logits, cfg.real_label)
    return F.binary_cross_entropy_with_logits(
        real_logits, real_target
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def generator_loss(cfg: TrainConfig, logits: torch.Tensor) -> torch.Tensor:
    """Hinge: raise D's logit on fakes. BCE non-saturating maximises log D(G(z)); minimax
    minimises log(1 - D(G(z))) (its gradient vanishes while D wins)."""
    if cfg.loss == "hinge":
        return -logits.mean()
    if cfg.g_loss == "non-saturating":
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    return -F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
