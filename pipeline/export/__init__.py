"""Export a generator to ONNX and TorchScript, and refuse artifacts that do not match eager.

One module a job: artifacts.py (what an export records), module.py (what gets exported),
onnx_file.py, torchscript_file.py, parity.py; this one runs them in order.

Both files are written into a temporary directory beside the destination, checked there (ONNX
checker, input/output signature as contract 2, parity against eager PyTorch at several batch sizes
on the artifacts exactly as written), and only then moved into place. A failed check raises
``ExportError`` and leaves the destination as it was, so a registry publish that follows an export
can never ship a model whose servers would draw different digits than the checkpoint.

Parity inputs follow contract 1 (``latent_for_seed`` and ``labels_for_request``), so the figures
recorded in the manifest are measured on the very inputs the servers will see.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
import torch
from torch import nn

from models.contract import ONNX_NAME, TORCHSCRIPT_NAME
from models.fileio import sha256_file
from models.netconfig import GANConfig
from pipeline.checkpoint import load_generator
from pipeline.errors import ExportError
from pipeline.export.artifacts import (
    BATCH_DIM,
    ONNX_TOLERANCE,
    PARITY_BATCH_SIZES,
    PARITY_SEED,
    SIGNATURE_METADATA_KEY,
    TORCHSCRIPT_TOLERANCE,
    ArtifactFile,
    Backend,
    Exporter,
    ExportResult,
    ParityCheck,
)
from pipeline.export.module import SignatureModule
from pipeline.export.onnx_file import export_onnx
from pipeline.export.parity import check_parity, parity_message
from pipeline.export.torchscript_file import export_torchscript

log = logging.getLogger("dcgan.export")

__all__ = [
    "BATCH_DIM",
    "ONNX_TOLERANCE",
    "PARITY_BATCH_SIZES",
    "PARITY_SEED",
    "SIGNATURE_METADATA_KEY",
    "TORCHSCRIPT_TOLERANCE",
    "ArtifactFile",
    "Backend",
    "ExportError",
    "ExportResult",
    "Exporter",
    "ParityCheck",
    "export_checkpoint",
    "export_generator",
]

# --- public entry points -----------------------------------------------------------------------


def export_checkpoint(checkpoint: Path, out_dir: Path, **kwargs: Any) -> ExportResult:
    """Export the generator of a training checkpoint (file or run directory) into ``out_dir``."""
    generator, cfg, _ = load_generator(checkpoint)  # CheckpointError names what is wrong
    return export_generator(generator, cfg, out_dir, **kwargs)


def export_generator(
    generator: nn.Module,
    cfg: GANConfig,
    out_dir: Path,
    *,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    seed: int = PARITY_SEED,
    opset: int | None = None,
    exporter: Exporter = "auto",
    onnx_tolerance: float = ONNX_TOLERANCE,
    torchscript_tolerance: float = TORCHSCRIPT_TOLERANCE,
) -> ExportResult:
    """Write ``generator.onnx`` and ``generator.torchscript.pt`` into ``out_dir`` once all checks
    pass; raise ``ExportError`` (destination untouched) when any fails.

    The generator is copied to the CPU in eval mode (batch-norm running statistics), so the
    caller's module keeps its device and mode. ``exporter="auto"`` uses the torch.export-based
    exporter and falls back to the legacy TorchScript-based one only if the former raises.
    """
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch_sizes must be positive, got {list(batch_sizes)}")
    started = time.perf_counter()
    sig = cfg.signature
    module = SignatureModule(generator, sig)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    try:
        onnx_path, ts_path = staging / ONNX_NAME, staging / TORCHSCRIPT_NAME
        used, opset_used = export_onnx(module, sig, onnx_path, opset, exporter)
        export_torchscript(module, sig, ts_path)
        parity = check_parity(
            module,
            sig,
            onnx_path,
            ts_path,
            batch_sizes,
            seed,
            onnx_tolerance,
            torchscript_tolerance,
        )
        failed = [p for p in parity if not p.passed]
        if failed:
            raise ExportError(parity_message(failed, out_dir), parity)
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for path in (onnx_path, ts_path):
            info = _describe(path)
            os.replace(path, out_dir / path.name)
            files.append(ArtifactFile(out_dir / path.name, info.sha256, info.size))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = ExportResult(
        onnx=files[0],
        torchscript=files[1],
        opset=opset_used,
        exporter=used,
        versions=_versions(used),
        parity=parity,
        parity_seed=seed,
        signature=sig.to_dict(),
        export_seconds=time.perf_counter() - started,
    )
    log.info(
        "event=exported dir=%s exporter=%s opset=%d onnx_max_diff=%.2e ts_max_diff=%.2e "
        "seconds=%.2f",
        out_dir,
        used,
        opset_used,
        result.max_abs_diff("onnxruntime"),
        result.max_abs_diff("torchscript"),
        result.export_seconds,
    )
    return result


# --- helpers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileInfo:
    sha256: str
    size: int


def _describe(path: Path) -> _FileInfo:
    return _FileInfo(*sha256_file(path))


def _versions(exporter: str) -> dict[str, str]:
    versions = {
        "torch": str(torch.__version__),
        "onnx": str(onnx.__version__),
        "onnxruntime": str(ort.__version__),
    }
    if exporter == "dynamo":
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions["onnxscript"] = importlib.metadata.version("onnxscript")
    return versions
