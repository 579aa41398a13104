"""Which device a run trains (and evaluates) on, and its images put there once.

A device asked for by name that this machine lacks is a one-line user error (exit 2), never a
CUDA traceback halfway through a run.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device {name} was asked for but no CUDA GPU is available: use --device cpu"
        )
    return device


def to_device_images(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [-1, 1], resident on the device."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.unsqueeze(1).float().div_(127.5).sub_(1.0)
