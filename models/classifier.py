"""A small CNN that classifies 28x28 digits: the yardstick the GAN evaluation measures with.

Input is float (N, 1, 28, 28) in [-1, 1], the generator's output scale, so real and generated
digits go through the same network unchanged. ``features`` gives the 128-d penultimate layer that
the Frechet distance and the diversity ratio are computed in; ``forward`` gives the logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

# Bump when the layers change: cached weights of an older layout must not be reused.
CLASSIFIER_VERSION = 1


@dataclass(frozen=True)
class ClassifierConfig:
    num_classes: int = 10
    width: int = 32  # channels of the first conv; the second has 2x this
    feature_dim: int = 128  # size of the feature space the Frechet distance lives in
    dropout: float = 0.3  # before the head only: features stay deterministic in eval mode

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DigitClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ClassifierConfig()
        w = cfg.width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, 1, 1, bias=False),  # (B, w, 28, 28)
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, w, 14, 14)
            nn.Conv2d(w, w * 2, 3, 1, 1, bias=False),  # (B, 2w, 14, 14)
            nn.BatchNorm2d(w * 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            nn.Flatten(),  # (B, 2w * 49)
            nn.Linear(w * 2 * 49, cfg.feature_dim),
            nn.ReLU(inplace=True),  # (B, feature_dim)
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, feature_dim): the embedding the metrics compare."""
        out: torch.Tensor = self.body(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.dropout(self.features(x)))
        return logits  # (B, num_classes)
