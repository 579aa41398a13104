"""ONNX: export (torch.export-based, legacy as fallback), stamp the signature, check the graph."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import onnx
import torch

from models.contract import (
    GeneratorSignature,
)
from pipeline.errors import ExportError
from pipeline.export.artifacts import BATCH_DIM, SIGNATURE_METADATA_KEY, Exporter
from pipeline.export.module import SignatureModule, quiet_exporters

log = logging.getLogger("dcgan.export")

# --- ONNX ----------------------------------------------------------------------------------------


def export_onnx(
    module: SignatureModule,
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
    check_onnx_signature(model, sig)
    # One self-contained file: weights inline, never beside it as external data.
    onnx.save_model(model, str(path), save_as_external_data=False)
    return used, _default_opset(model)


def _export_onnx_dynamo(
    module: SignatureModule, sig: GeneratorSignature, path: Path, opset: int | None
) -> None:
    batch = torch.export.Dim(BATCH_DIM, min=1)
    # Naming the labels axis too would make the exporter warn that it merges two names for one
    # symbol; AUTO lets export infer it equals N from torch.cat, and the check below proves it.
    shapes: dict[str, Any] = {"z": {0: batch}}
    if sig.conditional:
        shapes["labels"] = {0: torch.export.Dim.AUTO}
    with quiet_exporters():
        _torch_onnx_export(
            module, sig, path, opset, dynamo=True, dynamic_shapes=shapes, external_data=False
        )


def _torch_onnx_export(
    module: SignatureModule,
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
    module: SignatureModule, sig: GeneratorSignature, path: Path, opset: int | None
) -> None:
    axes = {name: {0: BATCH_DIM} for name in [*sig.input_names, sig.output_name]}
    try:
        with quiet_exporters(), torch.no_grad():
            _torch_onnx_export(module, sig, path, opset, dynamo=False, dynamic_axes=axes)
    except Exception as exc:
        raise ExportError(f"ONNX export (legacy exporter) failed: {exc}") from exc


def _pin_output_dims(model: onnx.ModelProto, sig: GeneratorSignature) -> None:
    """The legacy exporter leaves a Reshape's output dims symbolic (FC generator); declare the
    static (C, 28, 28) of contract 2. Parity on the saved file proves the real shape."""
    (output,) = model.graph.output
    dims = output.type.tensor_type.shape.dim
    if len(dims) != 4:
        return  # check_onnx_signature reports it
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


def check_onnx_signature(model: onnx.ModelProto, sig: GeneratorSignature) -> None:
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
