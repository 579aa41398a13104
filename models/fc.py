"""Fully connected GAN (MLP generator and discriminator): the baseline next to the DCGAN."""

from __future__ import annotations

import torch
from torch import nn

from models.netconfig import GANConfig


class FCGenerator(nn.Module):
    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.g_width * 4  # 256 at the default width
        pixels = cfg.channels * cfg.image_size * cfg.image_size
        in_dim = cfg.latent_dim + (cfg.embed_dim if cfg.conditional else 0)
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim) if cfg.conditional else None
        self.net = nn.Sequential(
            nn.Linear(in_dim, w),
            nn.BatchNorm1d(w),
            nn.ReLU(True),
            nn.Linear(w, w * 2),
            nn.BatchNorm1d(w * 2),
            nn.ReLU(True),
            nn.Linear(w * 2, w * 4),
            nn.BatchNorm1d(w * 4),
            nn.ReLU(True),
            nn.Linear(w * 4, pixels),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            assert labels is not None, "a conditional generator needs labels"
            z = torch.cat([z, self.embed(labels)], dim=1)
        size = self.cfg.image_size
        images: torch.Tensor = self.net(z)
        return images.view(-1, self.cfg.channels, size, size)  # (B, C, 28, 28)


class FCDiscriminator(nn.Module):
    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.d_width * 4
        pixels = cfg.channels * cfg.image_size * cfg.image_size
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim) if cfg.conditional else None
        in_dim = pixels + (cfg.embed_dim if cfg.conditional else 0)
        self.net = nn.Sequential(
            nn.Linear(in_dim, w * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(w * 2, w),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(w, 1),
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)
        if self.embed is not None:
            assert labels is not None, "a conditional discriminator needs labels"
            x = torch.cat([x, self.embed(labels).to(x.dtype)], dim=1)
        logits: torch.Tensor = self.net(x)
        return logits.flatten()  # (B,) logits

    def probability(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self(x, labels))
