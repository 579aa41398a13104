"""Which model the server answers with: load the alias, verify, warm up, hot-swap, never go dark.

The current model is one attribute that a request reads once and keeps, so a swap never changes the
model under a request in flight; the old model is freed when its last request finishes. Loading
happens off the event loop, one at a time; any failure (registry outage, checksum, ONNX load,
warm-up) keeps the loaded model serving and is reported on /readyz, the logs and /metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from models.latent import NUM_CLASSES
from models.registry import Manifest, ModelRegistry
from models.registry.errors import StoreError
from models.signature import GeneratorSignature
from serving.engine import Device, OnnxBackend
from serving.errors import ModelLoadError, NotReady
from serving.generation import Backend, Plan

log = logging.getLogger("serving.lifecycle")

ONNX_FILE = "generator.onnx"
WARMUP_SEED = 0

BackendFactory = Callable[[Path, GeneratorSignature], Backend]


@dataclass(frozen=True)
class LoadedModel:
    """A verified, warmed-up model version and the backend that runs it."""

    name: str
    version: str
    manifest: Manifest
    backend: Backend
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def signature(self) -> GeneratorSignature:
        return self.backend.signature


@dataclass(frozen=True)
class RefreshResult:
    version: str
    changed: bool


def onnx_factory(device: Device, threads: int) -> BackendFactory:
    def build(directory: Path, sig: GeneratorSignature) -> Backend:
        return OnnxBackend(directory / ONNX_FILE, sig, device=device, threads=threads)

    return build


def warm_up(backend: Backend, sizes: tuple[int, ...]) -> None:
    """Run each batch size once and check the output is what contract 2 promises."""
    sig = backend.signature
    for size in sizes:
        plan = Plan(WARMUP_SEED, np.arange(size, dtype=np.int64) % NUM_CLASSES)
        out = backend.run(plan.latent(sig), plan.labels)
        expected = (size, sig.channels, sig.image_size, sig.image_size)
        if out.shape != expected or out.dtype != np.float32:
            raise ModelLoadError(
                f"warm-up gave {out.dtype}{list(out.shape)}, not float32{expected}"
            )
        if not np.isfinite(out).all() or np.abs(out).max() > 1.0 + 1e-3:
            raise ModelLoadError("warm-up output is not finite and within [-1, 1]")


class ModelManager:
    """Follows one registry alias. ``current`` is what new requests get."""

    def __init__(
        self,
        registry: ModelRegistry,
        cache_dir: Path,
        factory: BackendFactory,
        *,
        alias: str = "production",
        warmup_sizes: tuple[int, ...] = (1, 64),
    ) -> None:
        self.registry = registry
        self.cache_dir = cache_dir
        self.factory = factory
        self.alias = alias
        self.warmup_sizes = warmup_sizes
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.refused: dict[str, str] = {}  # version -> why it was refused (not retried)
        self._lock = threading.Lock()
        self.on_change: list[Callable[[LoadedModel], None]] = []
        self.on_failure: list[Callable[[str], None]] = []

    def require(self) -> LoadedModel:
        model = self.current
        if model is None:
            raise NotReady(
                f"no model loaded yet ({self.last_error or 'starting'}); "
                f"retry once a version is promoted to {self.alias!r}"
            )
        return model

    def refresh(self, *, retry_refused: bool = False) -> RefreshResult:
        """Resolve the alias and, if it moved, load and swap in its version.

        Raises the reason when the registry is unreachable or the version is refused; the loaded
        model, if any, keeps serving either way. A refused version is not retried by polling
        (``retry_refused`` does, for an explicit reload).
        """
        with self._lock:
            try:
                version = self.registry.resolve(self.alias)
                current = self.current
                if current is not None and current.version == version:
                    self.last_error = None
                    return RefreshResult(version, changed=False)
                if version in self.refused and not retry_refused:
                    raise ModelLoadError(f"version {version} was refused: {self.refused[version]}")
                model = self._load(version)
            except Exception as exc:
                self._failed(exc)
                raise
            self.refused.pop(version, None)
            self.current = model
            self.last_error = None
        log.info(
            "serving.model_swapped model=%s version=%s previous=%s",
            model.name,
            model.version,
            current.version if current else None,
        )
        for callback in self.on_change:
            callback(model)
        return RefreshResult(version, changed=True)

    def _load(self, version: str) -> LoadedModel:
        started = time.monotonic()
        try:
            directory = self.registry.pull(version, self.cache_dir)  # sha256 of every file checked
            manifest = self.registry.show(version)
            sig = GeneratorSignature.from_dict(manifest.signature)
            backend = self.factory(directory, sig)
            warm_up(backend, self.warmup_sizes)
        except Exception as exc:
            if not is_outage(exc):
                self.refused[version] = str(exc)
            raise
        log.info(
            "serving.model_loaded model=%s version=%s seconds=%.2f",
            self.registry.model,
            version,
            time.monotonic() - started,
        )
        return LoadedModel(self.registry.model, version, manifest, backend)

    def _failed(self, exc: Exception) -> None:
        serving = self.current.version if self.current else None
        error = f"{type(exc).__name__}: {exc}"
        # Polling repeats the same failure (no model yet, registry down) every few seconds: warn
        # when it starts or changes, keep the repeats at debug level.
        level = logging.DEBUG if error == self.last_error else logging.WARNING
        self.last_error = error
        log.log(
            level, "serving.refresh_failed alias=%s serving=%s error=%s", self.alias, serving, exc
        )
        for callback in self.on_failure:
            callback(self.last_error)


def is_outage(exc: BaseException) -> bool:
    """Store errors are the registry's trouble, not the version's: retry those on the next poll."""
    return isinstance(exc, StoreError | OSError | TimeoutError)
