"""What an export produces and records: constants, files, parity checks, the result (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

PARITY_BATCH_SIZES: tuple[int, ...] = (1, 64, 1024)
PARITY_SEED = 0
ONNX_TOLERANCE = 1e-4  # ORT reorders float sums; 2.5e-6 seen on the trained g_width=64 model
TORCHSCRIPT_TOLERANCE = 1e-6  # same kernels as eager; seen exact in practice
SIGNATURE_METADATA_KEY = "dcgan.signature"  # JSON of GeneratorSignature.to_dict(), in both files
BATCH_DIM = "N"

Exporter = Literal["auto", "dynamo", "legacy"]
Backend = Literal["onnxruntime", "torchscript"]


@dataclass(frozen=True)
class ArtifactFile:
    path: Path
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.path.name, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class ParityCheck:
    """Max |artifact - eager| over one batch of contract-1 inputs."""

    backend: Backend
    batch_size: int
    max_abs_diff: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_diff <= self.tolerance)  # NaN compares False: fails


@dataclass(frozen=True)
class ExportResult:
    """What the registry manifest records about an export (see ``to_manifest``)."""

    onnx: ArtifactFile
    torchscript: ArtifactFile
    opset: int
    exporter: Literal["dynamo", "legacy"]
    versions: dict[str, str]
    parity: list[ParityCheck]
    parity_seed: int
    signature: dict[str, Any]
    export_seconds: float

    @property
    def files(self) -> list[ArtifactFile]:
        return [self.onnx, self.torchscript]

    def max_abs_diff(self, backend: Backend) -> float:
        return max(p.max_abs_diff for p in self.parity if p.backend == backend)

    def to_manifest(self) -> dict[str, Any]:
        """JSON-ready: files by name (paths are local), parity as backend -> batch -> diff."""
        parity: dict[str, dict[str, Any]] = {}
        for p in self.parity:
            entry = parity.setdefault(p.backend, {"tolerance": p.tolerance, "max_abs_diff": {}})
            entry["max_abs_diff"][str(p.batch_size)] = p.max_abs_diff
        return {
            "files": {f.path.name: {"sha256": f.sha256, "size": f.size} for f in self.files},
            "onnx_opset": self.opset,
            "onnx_exporter": self.exporter,
            "versions": dict(self.versions),
            "parity": parity,
            "parity_seed": self.parity_seed,
            "signature": self.signature,
            "export_seconds": round(self.export_seconds, 3),
        }
