"""What a training run leaves in its directory after each epoch: the sample grids (and how much
they vary, the collapse signal), the checkpoint and ``metrics.json``, each written atomically so
a crash never leaves half a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.contract import CHECKPOINT_NAME, SAMPLES_NAME, grid_labels
from models.fileio import write_atomic
from models.images import save_grid_png
from models.netconfig import GANConfig
from pipeline.checkpoint import save_checkpoint
from pipeline.longtail import spread
from pipeline.sampling import generate

METRICS_NAME = "metrics.json"


def write_samples(
    generator: nn.Module,
    gan_cfg: GANConfig,
    seed: int,
    device: torch.device,
    out_dir: Path,
    epoch: int,
) -> tuple[float, list[float]]:
    """Sample grid from fixed noise, one row per digit; returns its within-row pixel spread,
    overall and per class (row).

    The spread (mean over rows of the per-pixel std across the row's samples, pixels in [0, 1])
    falls toward 0 when the generator collapses onto one image per class.
    """
    images = generate(generator, gan_cfg, seed, grid_labels(), device)
    save_grid_png(images, out_dir / "samples" / f"epoch_{epoch:03d}.png")
    save_grid_png(images, out_dir / SAMPLES_NAME)
    rows = (images.reshape(10, 10, -1) + 1) / 2
    per_class = [round(spread(row), 5) for row in rows]
    return float(np.mean(per_class)), per_class


def save_run(out_dir: Path, state: dict[str, Any], metrics: dict[str, Any]) -> None:
    """The checkpoint (everything needed to resume) and the metrics a person reads."""
    save_checkpoint(out_dir / CHECKPOINT_NAME, state)
    write_atomic(out_dir / METRICS_NAME, json.dumps(metrics, indent=2).encode())
