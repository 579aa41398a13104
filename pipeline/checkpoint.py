"""Training checkpoints: everything needed to resume exactly, loaded without unpickling code.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so ``torch.load(...,
weights_only=True)`` reads it; anything else in the file is refused rather than executed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.contract import CHECKPOINT_NAME
from models.fileio import write_atomic
from models.netconfig import GANConfig
from models.networks import build_generator
from pipeline.errors import CheckpointError

FORMAT_VERSION = 1


def save_torch_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Serialize to memory, then write atomically: a crash never leaves half a file."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    save_torch_atomic(path, {"format_version": FORMAT_VERSION, **state})


def resolve_checkpoint_path(path: Path) -> Path:
    """Accept a checkpoint file or a run directory that holds one."""
    return path / CHECKPOINT_NAME if path.is_dir() else path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = resolve_checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"checkpoint {path} cannot be read safely: {_reason(exc)}") from exc
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} is not a dcgan checkpoint (format {FORMAT_VERSION})"
        )
    return state


def _reason(exc: Exception) -> str:
    """One line out of torch's multi-paragraph load errors."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("WeightsUnpickler error:"):
            return line.split(". Please use")[0]
    return lines[0] if lines else type(exc).__name__


def load_generator(
    path: Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, GANConfig, dict[str, Any]]:
    """The trained generator (eval mode) from a checkpoint, its config, and the full state.

    With a moving average of the generator in the checkpoint (``ema_decay``), that is the one
    returned: it is what was sampled and evaluated during training, and what is served.
    """
    state = load_checkpoint(path)
    cfg = GANConfig.from_dict(state["gan_config"])
    generator = build_generator(cfg)
    try:
        ema = state.get("generator_ema")
        generator.load_state_dict(ema["module"] if ema is not None else state["generator"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {path}: generator weights do not fit its config"
        ) from exc
    return generator.to(device).eval(), cfg, state
