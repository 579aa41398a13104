"""Parity: the artifacts as written against eager PyTorch, on contract-1 inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models.contract import (
    GeneratorSignature,
    labels_for_request,
    latent_for_seed,
)
from pipeline.export.artifacts import ParityCheck
from pipeline.export.module import SignatureModule, quiet_exporters

# --- parity --------------------------------------------------------------------------------------


def check_parity(
    module: SignatureModule,
    sig: GeneratorSignature,
    onnx_path: Path,
    ts_path: Path,
    batch_sizes: Sequence[int],
    seed: int,
    onnx_tolerance: float,
    torchscript_tolerance: float,
) -> list[ParityCheck]:
    """Run the saved artifacts (not the in-memory objects) against eager on contract-1 inputs."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with quiet_exporters():
        scripted = torch.jit.load(str(ts_path), map_location="cpu")  # type: ignore[no-untyped-call]
    scripted.eval()
    checks: list[ParityCheck] = []
    for n in batch_sizes:
        z = latent_for_seed(seed, n, sig.latent_dim)
        labels = labels_for_request(n, None)
        feeds = {"z": z, "labels": labels} if sig.conditional else {"z": z}
        tensors = tuple(torch.from_numpy(v) for v in feeds.values())
        with torch.no_grad():
            eager = module(*tensors).numpy()
            ts_out = scripted(*tensors).numpy()
        ort_out = np.asarray(session.run([sig.output_name], feeds)[0])
        checks.append(ParityCheck("onnxruntime", n, _max_abs_diff(ort_out, eager), onnx_tolerance))
        checks.append(
            ParityCheck("torchscript", n, _max_abs_diff(ts_out, eager), torchscript_tolerance)
        )
    return checks


def _max_abs_diff(got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        return float("inf")
    if not got.size:
        return 0.0
    return float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))


def parity_message(failed: Sequence[ParityCheck], out_dir: Path) -> str:
    parts = [
        f"{p.backend} at batch {p.batch_size}: max abs diff {p.max_abs_diff:.3g} > {p.tolerance:g}"
        for p in failed
    ]
    return (
        "exported generator does not match eager PyTorch ("
        + "; ".join(parts)
        + f"); nothing was written to {out_dir}. The exported graph computes something else than "
        "the module: look for export-only code paths or ops the exporter does not support."
    )
