"""The module that gets exported (the generator behind contract 2's exact signature), and the
filter that keeps the exporters' known, harmless noise out of the logs."""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from models.contract import (
    GeneratorSignature,
    labels_for_request,
    latent_for_seed,
)
from pipeline.export.artifacts import PARITY_SEED

# --- the module that gets exported ---------------------------------------------------------------


class SignatureModule(nn.Module):
    """The generator behind contract 2's exact signature: ``(z, labels)`` or ``(z,)``.

    Holds a CPU, float32, eval-mode copy so that export never changes the caller's module and
    the traced/exported graph uses batch-norm running statistics.
    """

    def __init__(self, generator: nn.Module, sig: GeneratorSignature) -> None:
        super().__init__()
        self.generator = copy.deepcopy(generator).cpu().float().eval()
        self.conditional = sig.conditional
        for p in self.generator.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        images: torch.Tensor = self.generator(z, labels) if self.conditional else self.generator(z)
        return images

    def example(self, sig: GeneratorSignature, n: int = 2) -> tuple[torch.Tensor, ...]:
        """Contract-1 inputs; n=2 because torch.export specializes a size-1 dim to a constant."""
        z = torch.from_numpy(latent_for_seed(PARITY_SEED, n, sig.latent_dim))
        if not self.conditional:
            return (z,)
        return z, torch.from_numpy(labels_for_request(n, None))


# Known, harmless noise from the exporters in torch 2.13; anything else still reaches the caller
# (and fails the tests, which run with filterwarnings=error).
_IGNORED_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # (category, message regex, module regex of the code the warning is attributed to)
    # torch.export deep-copies pytree specs, which trips a deprecation inside torch itself.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"copyreg"),
    # TorchScript and the legacy ONNX exporter announce their deprecation; we use them on purpose.
    (DeprecationWarning, r"`torch\.jit\.\w+` is deprecated", r"torch\.jit"),
    (DeprecationWarning, r"You are using the legacy TorchScript-based ONNX export", r""),
    (DeprecationWarning, r"The feature will be removed", r"torch\.onnx"),
)
# The exporter logs one WARNING per torchvision op it cannot register; torchvision is not needed.
# onnxscript's optimizer and onnx_ir log every pass at INFO, which floods a CLI at INFO level.
_NOISY_LOGGERS = {
    "torch.onnx._internal.exporter._registration": logging.ERROR,
    "onnxscript": logging.WARNING,
    "onnx_ir": logging.WARNING,
}


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    quiet = list(_NOISY_LOGGERS.values())
    with warnings.catch_warnings():
        for category, message, module in _IGNORED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
        for lg, level in zip(loggers, quiet, strict=True):
            lg.setLevel(max(level, lg.getEffectiveLevel()))
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
