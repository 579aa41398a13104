"""Build a TorchServe model archive (.mar) from a registry version.

The version is pulled (every sha256 verified) and packed with torch-model-archiver: the TorchScript
generator as the serialized file, the registry's ``manifest.json`` as an extra file (the handler
reads name, version and signature from it), the version's ``classifier.onnx`` where it has one
(filtered answers) and ``handler.py``. The archiver runs as a subprocess
with its own TMPDIR because it stages files in ``$TMPDIR/<model name>``, a path two concurrent
builds of the same model would share. The finished .mar is renamed into the model store, so
TorchServe never sees half an archive.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

from models.contract import CLASSIFIER_NAME, MANIFEST_NAME, TORCHSCRIPT_NAME
from models.fileio import copy_atomic
from models.registry import Manifest, ModelRegistry
from serving.core.errors import ArchiveError

log = logging.getLogger("serving.torchserve")

HANDLER = Path(__file__).with_name("handler.py")
MODEL_CONFIG_NAME = "model-config.yaml"
ARCHIVER_TIMEOUT_S = 300


def mar_name(model: str, version: str) -> str:
    """``<model>-<version>.mar``: one file per version, so a model store can hold several."""
    return f"{model}-{version}.mar"


def build_archive(
    registry: ModelRegistry,
    ref: str,
    out_dir: Path,
    *,
    cache_dir: Path,
    max_batch_size: int | None = None,
) -> Path:
    """Pull ``ref`` (alias or version), archive it, and return ``out_dir/<model>-<version>.mar``.

    ``max_batch_size`` goes into the archive's model config (``handler.max_batch_size``); the
    env var ``DCGAN_SERVE_MAX_BATCH_SIZE`` of the TorchServe process still overrides it.
    """
    if find_spec("model_archiver") is None:
        raise ArchiveError(
            "torch-model-archiver is not installed: pip install torch-model-archiver==0.12.0"
        )
    if max_batch_size is not None and max_batch_size < 1:
        raise ArchiveError(f"max_batch_size is {max_batch_size}; it must be at least 1")
    published = registry.show(ref)
    if TORCHSCRIPT_NAME not in published.files:
        raise ArchiveError(
            f"version {published.version} of {published.model_name} has no {TORCHSCRIPT_NAME} "
            "(published without TorchScript): export and publish it again to serve it on TorchServe"
        )
    # The evaluation classifier too, where the version has one: filtered answers (min_confidence).
    version_dir = registry.pull(
        published.version, cache_dir, files=[TORCHSCRIPT_NAME], optional=[CLASSIFIER_NAME]
    )
    manifest_path = version_dir / MANIFEST_NAME
    classifier = version_dir / CLASSIFIER_NAME
    extra = [manifest_path, classifier] if CLASSIFIER_NAME in published.files else [manifest_path]
    manifest = Manifest.from_json(manifest_path.read_bytes(), str(manifest_path))
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / mar_name(manifest.model_name, manifest.version)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dcgan-mar-") as work:
        built = _run_archiver(
            Path(work),
            model_name=manifest.model_name,
            version=manifest.version,
            serialized=version_dir / TORCHSCRIPT_NAME,
            extra=extra,
            max_batch_size=max_batch_size,
        )
        copy_atomic(built, target)  # a hidden name beside it until complete, not *.mar
    log.info(
        "torchserve.archived model=%s version=%s mar=%s seconds=%.2f",
        manifest.model_name,
        manifest.version,
        target,
        time.monotonic() - started,
    )
    return target


def _run_archiver(
    work: Path,
    *,
    model_name: str,
    version: str,
    serialized: Path,
    extra: list[Path],
    max_batch_size: int | None,
) -> Path:
    export = work / "export"
    tmp = work / "tmp"
    export.mkdir()
    tmp.mkdir()
    command = [
        sys.executable,
        "-m",
        "model_archiver.model_packaging",
        "--model-name",
        model_name,
        "--version",
        version,
        "--serialized-file",
        str(serialized),
        "--handler",
        str(HANDLER),
        "--extra-files",
        ",".join(str(path) for path in extra),
        "--export-path",
        str(export),
    ]
    if max_batch_size is not None:
        config = work / MODEL_CONFIG_NAME
        # JSON is YAML: no yaml dependency needed to write it.
        config.write_text(json.dumps({"handler": {"max_batch_size": max_batch_size}}) + "\n")
        command += ["--config-file", str(config)]
    env = {**os.environ, "TMPDIR": str(tmp)}
    try:
        result = subprocess.run(
            command,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=ARCHIVER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ArchiveError(
            f"torch-model-archiver did not finish in {ARCHIVER_TIMEOUT_S} s"
        ) from None
    built = export / f"{model_name}.mar"
    if result.returncode != 0 or not built.is_file():
        lines = (result.stderr or result.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise ArchiveError(f"torch-model-archiver failed for {model_name} {version}: {reason}")
    return built
