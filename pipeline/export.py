"""Export a generator to ONNX and TorchScript, and refuse artifacts that do not match eager.

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
import copy
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from models.contract import (
    ONNX_NAME,
    TORCHSCRIPT_NAME,
    GeneratorSignature,
    labels_for_request,
    latent_for_seed,
)
from models.fileio import sha256_file
from models.netconfig import GANConfig
from pipeline.checkpoint import load_generator
from pipeline.errors import ExportError

log = logging.getLogger("dcgan.export")

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
    gan_config: dict[str, Any] = field(default_factory=dict)

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
    module = _SignatureModule(generator, sig)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    try:
        onnx_path, ts_path = staging / ONNX_NAME, staging / TORCHSCRIPT_NAME
        used, opset_used = _export_onnx(module, sig, onnx_path, opset, exporter)
        _export_torchscript(module, sig, ts_path)
        parity = _check_parity(
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
            raise ExportError(_parity_message(failed, out_dir), parity)
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
        gan_config=cfg.to_dict(),
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


# --- the module that gets exported ---------------------------------------------------------------


class _SignatureModule(nn.Module):
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


# --- ONNX ----------------------------------------------------------------------------------------


def _export_onnx(
    module: _SignatureModule,
    sig: GeneratorSignature,
    path: Path,
    opset: int | None,
    exporter: Exporter,
) -> tuple[Literal["dynamo", "legacy"], int]:
    """Export, stamp the signature into the metadata, check fully, save as one file."""
    used: Literal["dynamo", "legacy"]
    if exporter in ("auto", "dynamo"):
        try:
            _export_onnx_dynamo(module, sig, path, opset)
            used = "dynamo"
        except Exception as exc:
            if exporter == "dynamo":
                raise ExportError(f"ONNX export (torch.export-based) failed: {exc}") from exc
            log.warning("event=onnx_dynamo_failed fallback=legacy reason=%r", str(exc)[:300])
            path.unlink(missing_ok=True)
            _export_onnx_legacy(module, sig, path, opset)
            used = "legacy"
    else:
        _export_onnx_legacy(module, sig, path, opset)
        used = "legacy"

    model = onnx.load(str(path), load_external_data=True)
    if used == "legacy":
        _pin_output_dims(model, sig)
    _set_metadata(model, {SIGNATURE_METADATA_KEY: json.dumps(sig.to_dict(), sort_keys=True)})
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX model fails the ONNX checker: {exc}") from exc
    _check_onnx_signature(model, sig)
    # One self-contained file: weights inline, never beside it as external data.
    onnx.save_model(model, str(path), save_as_external_data=False)
    return used, _default_opset(model)


def _export_onnx_dynamo(
    module: _SignatureModule, sig: GeneratorSignature, path: Path, opset: int | None
) -> None:
    batch = torch.export.Dim(BATCH_DIM, min=1)
    # Naming the labels axis too would make the exporter warn that it merges two names for one
    # symbol; AUTO lets export infer it equals N from torch.cat, and the check below proves it.
    shapes: dict[str, Any] = {"z": {0: batch}}
    if sig.conditional:
        shapes["labels"] = {0: torch.export.Dim.AUTO}
    with _quiet_exporters():
        _torch_onnx_export(
            module, sig, path, opset, dynamo=True, dynamic_shapes=shapes, external_data=False
        )


def _torch_onnx_export(
    module: _SignatureModule,
    sig: GeneratorSignature,
    path: Path,
    opset: int | None,
    **exporter_options: Any,
) -> None:
    """torch.onnx.export with the names and opset of contract 2; the caller picks the exporter."""
    torch.onnx.export(
        module,
        module.example(sig),
        str(path),
        input_names=sig.input_names,
        output_names=[sig.output_name],
        opset_version=opset,
        verbose=False,
        **exporter_options,
    )


def _export_onnx_legacy(
    module: _SignatureModule, sig: GeneratorSignature, path: Path, opset: int | None
) -> None:
    axes = {name: {0: BATCH_DIM} for name in [*sig.input_names, sig.output_name]}
    try:
        with _quiet_exporters(), torch.no_grad():
            _torch_onnx_export(module, sig, path, opset, dynamo=False, dynamic_axes=axes)
    except Exception as exc:
        raise ExportError(f"ONNX export (legacy exporter) failed: {exc}") from exc


def _pin_output_dims(model: onnx.ModelProto, sig: GeneratorSignature) -> None:
    """The legacy exporter leaves a Reshape's output dims symbolic (FC generator); declare the
    static (C, 28, 28) of contract 2. Parity on the saved file proves the real shape."""
    (output,) = model.graph.output
    dims = output.type.tensor_type.shape.dim
    if len(dims) != 4:
        return  # _check_onnx_signature reports it
    for dim, value in zip(dims[1:], (sig.channels, sig.image_size, sig.image_size), strict=True):
        if dim.dim_param:
            dim.ClearField("dim_param")
            dim.dim_value = value


def _set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        model.metadata_props.add(key=key, value=value)


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ExportError("the exported ONNX model declares no default-domain opset")


def _check_onnx_signature(model: onnx.ModelProto, sig: GeneratorSignature) -> None:
    """Contract 2 on the graph itself: names, dtypes, static dims, one shared dynamic batch dim."""
    want_inputs = [("z", onnx.TensorProto.FLOAT, [None, sig.latent_dim])]
    if sig.conditional:
        want_inputs.append(("labels", onnx.TensorProto.INT64, [None]))
    size = sig.image_size
    want_outputs = [(sig.output_name, onnx.TensorProto.FLOAT, [None, sig.channels, size, size])]
    problems: list[str] = []
    batch_names: set[str] = set()
    initializers = {t.name for t in model.graph.initializer}
    got_inputs = [v for v in model.graph.input if v.name not in initializers]
    pairs = [
        ("input", list(got_inputs), want_inputs),
        ("output", list(model.graph.output), want_outputs),
    ]
    for kind, got, want in pairs:
        if [v.name for v in got] != [name for name, _, _ in want]:
            problems.append(f"{kind}s are {[v.name for v in got]}, want {[n for n, _, _ in want]}")
            continue
        for value, (name, dtype, dims) in zip(got, want, strict=True):
            tensor = value.type.tensor_type
            if tensor.elem_type != dtype:
                problems.append(
                    f"{name} has dtype {onnx.TensorProto.DataType.Name(tensor.elem_type)}"
                )
            shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            if len(shape) != len(dims) or shape[1:] != dims[1:]:
                problems.append(f"{name} has shape {shape}, want {['N', *dims[1:]]}")
            elif not isinstance(shape[0], str) or not shape[0]:
                problems.append(f"{name} has a fixed batch dim {shape[0]}, want a dynamic one")
            else:
                batch_names.add(shape[0])
    if not problems and len(batch_names) != 1:
        problems.append(f"batch dims are not one shared axis: {sorted(batch_names)}")
    if problems:
        raise ExportError("the exported ONNX model breaks contract 2: " + "; ".join(problems))


# --- TorchScript ---------------------------------------------------------------------------------


def _export_torchscript(module: _SignatureModule, sig: GeneratorSignature, path: Path) -> None:
    """Trace (the generators have no data-dependent control flow) and save with the signature.

    ``check_trace`` is off: it re-runs the trace and only warns; the parity check below runs on the
    saved file at several batch sizes and fails hard instead.
    """
    try:
        with _quiet_exporters(), torch.no_grad():
            traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                module, module.example(sig), check_trace=False
            )
    except Exception as exc:
        raise ExportError(f"TorchScript tracing of the generator failed: {exc}") from exc
    extra = {"signature.json": json.dumps(sig.to_dict(), sort_keys=True)}
    with _quiet_exporters():
        torch.jit.save(traced, str(path), _extra_files=extra)


def read_torchscript_signature(path: Path) -> dict[str, Any]:
    """The signature stored beside the TorchScript program (for the TorchServe handler)."""
    extra = {"signature.json": ""}
    with _quiet_exporters():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)  # type: ignore[no-untyped-call]
    return dict(json.loads(extra["signature.json"]))


# --- parity --------------------------------------------------------------------------------------


def _check_parity(
    module: _SignatureModule,
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
    with _quiet_exporters():
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


def _parity_message(failed: Sequence[ParityCheck], out_dir: Path) -> str:
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
def _quiet_exporters() -> Iterator[None]:
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


__all__ = [
    "ONNX_NAME",
    "PARITY_BATCH_SIZES",
    "TORCHSCRIPT_NAME",
    "ArtifactFile",
    "ExportError",
    "ExportResult",
    "ParityCheck",
    "export_checkpoint",
    "export_generator",
    "read_torchscript_signature",
]
