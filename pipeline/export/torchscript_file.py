"""TorchScript: trace the module and stamp the signature beside the program."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from models.contract import GeneratorSignature
from pipeline.errors import ExportError
from pipeline.export.module import SignatureModule, quiet_exporters

# --- TorchScript ---------------------------------------------------------------------------------


def export_torchscript(module: SignatureModule, sig: GeneratorSignature, path: Path) -> None:
    """Trace (the generators have no data-dependent control flow) and save with the signature.

    ``check_trace`` is off: it re-runs the trace and only warns; the parity check below runs on the
    saved file at several batch sizes and fails hard instead.
    """
    try:
        with quiet_exporters(), torch.no_grad():
            traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                module, module.example(sig), check_trace=False
            )
    except Exception as exc:
        raise ExportError(f"TorchScript tracing of the generator failed: {exc}") from exc
    extra = {"signature.json": json.dumps(sig.to_dict(), sort_keys=True)}
    with quiet_exporters():
        torch.jit.save(traced, str(path), _extra_files=extra)
