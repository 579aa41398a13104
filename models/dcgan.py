"""DCGAN generator and discriminator for 28x28 images, conditional on the digit or not.

Generator:  (z, label) -> 7x7 -> 14x14 -> 28x28, transposed convolutions, batch norm, ReLU, tanh.
Discriminator: image (+ label plane) -> strided convolutions, LeakyReLU, no pooling -> one logit.
The discriminator returns a logit, not a probability: the loss uses BCE-with-logits, which is the
numerically stable (and autocast-safe) form of sigmoid + binary cross entropy. ``probability()``
gives D(x) = sigmoid(logit) for monitoring.
"""

from __future__ import annotations

import torch
from torch import nn

from models.netconfig import GANConfig


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.g_width
        in_ch = cfg.latent_dim + (cfg.embed_dim if cfg.conditional else 0)
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim) if cfg.conditional else None
        self.net = nn.Sequential(
            nn.ConvTranspose2d(in_ch, w * 4, 7, 1, 0, bias=False),  # (B, 4w, 7, 7)
            nn.BatchNorm2d(w * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(w * 4, w * 2, 4, 2, 1, bias=False),  # (B, 2w, 14, 14)
            nn.BatchNorm2d(w * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(w * 2, cfg.channels, 4, 2, 1, bias=False),  # (B, C, 28, 28)
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            assert labels is not None, "a conditional generator needs labels"
            z = torch.cat([z, self.embed(labels)], dim=1)  # (B, latent + embed)
        images: torch.Tensor = self.net(z[:, :, None, None])
        return images  # (B, C, 28, 28) in [-1, 1]


class DCGANDiscriminator(nn.Module):
    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.d_width
        size = cfg.image_size
        # The label enters as one extra image plane, learned per class.
        self.embed = nn.Embedding(cfg.num_classes, size * size) if cfg.conditional else None
        in_ch = cfg.channels + (1 if cfg.conditional else 0)
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, w, 4, 2, 1, bias=False),  # (B, w, 14, 14)
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, w * 2, 4, 2, 1, bias=False),  # (B, 2w, 7, 7)
            nn.Identity() if cfg.d_spectral_norm else nn.BatchNorm2d(w * 2),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.head = nn.Conv2d(w * 2, 1, size // 4, 1, 0)  # (B, 1, 1, 1): one logit per image
        self.project = None
        if cfg.conditional and cfg.d_projection:
            self.project = nn.Embedding(cfg.num_classes, w * 2)
            nn.init.normal_(self.project.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            assert labels is not None, "a conditional discriminator needs labels"
            plane = self.embed(labels).view(-1, 1, self.cfg.image_size, self.cfg.image_size)
            x = torch.cat([x, plane.to(x.dtype)], dim=1)
        features = self.features(x)  # (B, 2w, 7, 7)
        logits: torch.Tensor = self.head(features).flatten()  # (B,)
        if self.project is not None:  # + <embed(y), spatial mean of the features>
            pooled = features.mean(dim=(2, 3))
            logits = logits + (self.project(labels) * pooled).sum(dim=1).to(logits.dtype)
        return logits  # (B,) logits

    def probability(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D(x): the probability that x is real."""
        return torch.sigmoid(self(x, labels))
