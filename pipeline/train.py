"""Train (or resume) a GAN run: what `dcgan train`, the retraining flow and the experiments call.

The work has its modules: trainer.py (the networks and the epoch loop), gan_loss.py (the BCE and
hinge losses), run_files.py (sample grids, checkpoint and metrics.json after each epoch),
device.py (the device and the images on it); this one sets a run up, resumes it from a
checkpoint, and returns what it produced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from models.contract import CHECKPOINT_NAME
from models.netconfig import GANConfig
from pipeline.checkpoint import load_checkpoint
from pipeline.data.loading import ImageDataset
from pipeline.device import resolve_device, to_device_images
from pipeline.errors import CheckpointError
from pipeline.train_config import TrainConfig
from pipeline.trainer import EpochCallback, GANTrainer

log = logging.getLogger("dcgan.train")


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    history: list[dict[str, Any]]
    generator: nn.Module
    gan_config: GANConfig


def train(
    cfg: TrainConfig,
    dataset: ImageDataset,
    out_dir: Path,
    resume: Path | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train (or resume) a GAN on ``dataset`` and leave checkpoint, metrics and samples in out_dir.

    On resume the checkpoint's config is used, except ``epochs`` (the new total), ``device``,
    ``compile`` and ``check_every`` which come from ``cfg``.
    """
    if resume is not None:
        state = load_checkpoint(resume)
        saved = TrainConfig.model_validate(state["train_config"])
        cfg = saved.model_copy(
            update={
                "epochs": cfg.epochs,
                "device": cfg.device,
                "compile": cfg.compile,
                "check_every": cfg.check_every,
            }
        )
        if state.get("dataset", {}).get("md5") not in (None, dataset.md5):
            raise CheckpointError(
                f"checkpoint {resume} was trained on different data than {dataset.name}"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = GANTrainer(cfg, out_dir)
    trainer.dataset_info = {**dataset.describe(), "md5": dataset.md5, "limit": cfg.limit}
    if resume is not None:
        trainer.load_state_dict(state)
        if trainer.epoch >= cfg.epochs:
            log.info("event=nothing_to_do epoch=%d epochs=%d", trainer.epoch, cfg.epochs)
    images, labels = dataset.train_subset(cfg.limit, cfg.seed)
    trainer.fit(images, labels, progress=progress, on_epoch=on_epoch)
    if not (out_dir / CHECKPOINT_NAME).exists():  # resumed a finished run into a new directory
        trainer._save()
    return TrainResult(
        out_dir,
        out_dir / CHECKPOINT_NAME,
        trainer.history,
        trainer.served_generator,
        trainer.gan_cfg,
    )


__all__ = [
    "EpochCallback",
    "GANTrainer",
    "TrainResult",
    "resolve_device",
    "to_device_images",
    "train",
]
