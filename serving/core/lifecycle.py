"""Which model the server answers with: load the alias, verify, warm up, hot-swap, never go dark.

The current model is one attribute that a request reads once and keeps, so a swap never changes the
model under a request in flight; the old model is freed when its last request finishes. Loading
happens off the event loop, one at a time; any failure keeps the loaded model serving and is
reported on /readyz, the logs and /metrics, under a :class:`FailureKind` that says what it is.

Only a defect of the version itself (checksum, manifest, ONNX load, warm-up) refuses that version
until an explicit reload; everything else (registry outage, disk full, permissions, memory,
timeouts) is retried on the next poll. A server that starts while the registry is unreachable
serves the version it last loaded for its alias from the local cache, every checksum verified
again, and says so (``source: cache``) until the registry answers.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

import numpy as np

from models.contract import (
    CLASSIFIER_NAME,
    NUM_CLASSES,
    ONNX_NAME,
    PRODUCTION,
    GeneratorSignature,
)
from models.registry import Manifest, ModelRegistry
from models.registry.cache import ModelCache
from models.registry.errors import (
    AliasNotFound,
    CacheError,
    ConcurrentUpdate,
    PublishInProgress,
    StoreError,
    StoreUnreachable,
    VersionNotFound,
)
from serving.core.errors import ModelLoadError, NotReady
from serving.core.filtering import Classifier
from serving.core.generation import Backend, Plan, render
from serving.core.onnx_backend import Device, OnnxBackend, OnnxClassifier, is_allocation_failure

log = logging.getLogger("serving.core.lifecycle")

WARMUP_SEED = 0

BackendFactory = Callable[[Path, GeneratorSignature], Backend]
ClassifierFactory = Callable[[Path, GeneratorSignature], Classifier]
Source = Literal["registry", "cache"]


class FailureKind(StrEnum):
    """What went wrong loading a version, as /readyz, /admin/reload and the logs name it."""

    REGISTRY_UNREACHABLE = "registry unreachable"
    REGISTRY_ERROR = "registry error"  # credentials, missing bucket, a publish in progress
    NOT_PUBLISHED = "not published"  # the alias is not set, or names a deleted version
    DISK_FULL = "disk full"
    PERMISSION_DENIED = "permission denied"
    CACHE_ERROR = "cache error"  # the local model cache failed otherwise
    OUT_OF_MEMORY = "out of memory"
    TIMEOUT = "timed out"
    REFUSED = "refused"  # the version itself is bad: checksum, manifest, ONNX load, warm-up

    @property
    def retried(self) -> bool:
        """Polling tries again (the cause can go away); a refused version waits for a reload."""
        return self is not FailureKind.REFUSED


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}


def classify(exc: BaseException) -> FailureKind:
    """The kind of a load failure; an error we do not know is the version's (refused)."""
    if isinstance(exc, CacheError | OSError) and not isinstance(exc, TimeoutError):
        code = exc.errno
        if code in _DISK_FULL:
            return FailureKind.DISK_FULL
        if code in _PERMISSION:
            return FailureKind.PERMISSION_DENIED
    if isinstance(exc, MemoryError):
        return FailureKind.OUT_OF_MEMORY
    if isinstance(exc, TimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(exc, StoreUnreachable):
        return FailureKind.REGISTRY_UNREACHABLE
    if isinstance(exc, AliasNotFound | VersionNotFound):
        return FailureKind.NOT_PUBLISHED
    if isinstance(exc, CacheError):
        return FailureKind.CACHE_ERROR
    if isinstance(exc, StoreError | PublishInProgress | ConcurrentUpdate | OSError):
        return FailureKind.REGISTRY_ERROR  # a local registry directory's I/O errors included
    return FailureKind.REFUSED


@dataclass(frozen=True)
class LoadedModel:
    """A verified, warmed-up model version and the backend that runs it."""

    name: str
    version: str
    manifest: Manifest
    backend: Backend
    source: Source = "registry"  # "cache": loaded from the local cache while the registry was down
    classifier: Classifier | None = None  # for filtered answers; None: published without one
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
        return OnnxBackend(directory / ONNX_NAME, sig, device=device, threads=threads)

    return build


@contextlib.contextmanager
def warm_up_failures(what: str) -> Iterator[None]:
    """A failing warm-up call refuses the version, unless it ran out of memory (then retried)."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as exc:
        if is_allocation_failure(exc):
            raise MemoryError(f"{what} ran out of memory: {exc}") from exc
        raise ModelLoadError(f"{what} failed: {exc}") from exc


def onnx_classifier_factory(device: Device, threads: int) -> ClassifierFactory:
    def build(directory: Path, sig: GeneratorSignature) -> Classifier:
        path = directory / CLASSIFIER_NAME
        return OnnxClassifier(path, sig.num_classes, device=device, threads=threads)

    return build


def warm_up_classifier(classifier: Classifier, backend: Backend) -> None:
    """Judge the warm-up digits once: a classifier that cannot, or answers outside [0, 1],
    refuses the version like a broken generator does."""
    sig = backend.signature
    plan = Plan(WARMUP_SEED, np.arange(NUM_CLASSES, dtype=np.int64) % sig.num_classes)
    with warm_up_failures(f"{CLASSIFIER_NAME} warm-up"):
        pixels = render(backend.run(plan.latent(sig), plan.labels))
        confidence = classifier.confidence(pixels, plan.labels)
    if confidence.shape != plan.labels.shape or not ((confidence >= 0) & (confidence <= 1)).all():
        raise ModelLoadError(f"{CLASSIFIER_NAME} warm-up gave no probability per image")


def warm_up(backend: Backend, sizes: tuple[int, ...]) -> None:
    """Run each batch size once and check the output is what contract 2 promises."""
    sig = backend.signature
    for size in sizes:
        plan = Plan(WARMUP_SEED, np.arange(size, dtype=np.int64) % NUM_CLASSES)
        with warm_up_failures(f"warm-up at batch {size}"):
            out = backend.run(plan.latent(sig), plan.labels)
        expected = (size, sig.channels, sig.image_size, sig.image_size)
        if out.shape != expected or out.dtype != np.float32:
            raise ModelLoadError(
                f"warm-up gave {out.dtype}{list(out.shape)}, not float32{expected}"
            )
        if not np.isfinite(out).all() or np.abs(out).max() > 1.0 + 1e-3:
            raise ModelLoadError("warm-up output is not finite and within [-1, 1]")


class ModelManager:
    """Follows one registry alias. ``current`` is what new requests get.

    ``served_files``: what is pulled of a version (the generator, not the training checkpoint);
    ``keep_versions``: how many version directories the cache keeps (the served one included).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        cache_dir: Path,
        factory: BackendFactory,
        *,
        alias: str = PRODUCTION,
        warmup_sizes: tuple[int, ...] = (1, 64),
        served_files: tuple[str, ...] = (ONNX_NAME,),
        keep_versions: int = 3,
        classifier_factory: ClassifierFactory | None = None,
    ) -> None:
        self.registry = registry
        self.cache_dir = cache_dir
        self.cache = ModelCache(cache_dir, registry.model)
        self.factory = factory
        self.alias = alias
        self.warmup_sizes = warmup_sizes
        self.served_files = served_files
        # The evaluation classifier too, where a version has one and filtering is served.
        self.optional_files = (CLASSIFIER_NAME,) if classifier_factory is not None else ()
        self.classifier_factory = classifier_factory
        self.keep_versions = keep_versions
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.last_error_kind: FailureKind | None = None
        self.refused: dict[str, str] = {}  # version -> why it was refused (not retried)
        self._lock = threading.Lock()
        self.on_change: list[Callable[[LoadedModel], None]] = []
        self.on_failure: list[Callable[[str], None]] = []

    def require(self) -> LoadedModel:
        model = self.current
        if model is None:
            # Public answers name no internal endpoint: why is on /readyz and in the logs.
            raise NotReady(
                f"no model loaded yet for {self.registry.model!r}: retry once a version of "
                f"its alias {self.alias!r} is loaded (operators: /readyz says why)"
            )
        return model

    def refresh(self, *, retry_refused: bool = False) -> RefreshResult:
        """Resolve the alias and, if it moved, load and swap in its version.

        Raises the reason when that fails; the loaded model, if any, keeps serving either way.
        With no model loaded and the registry unreachable, loads the alias's last version from
        the cache instead (and still raises the registry's error, so callers see the outage).
        A refused version is not retried by polling (``retry_refused`` does, for a reload).
        """
        with self._lock:
            current = self.current
            try:
                version = self.registry.resolve(self.alias)
                if current is not None and current.version == version:
                    if current.source == "registry":
                        self.last_error = self.last_error_kind = None
                        return RefreshResult(version, changed=False)
                    # served from the cache: verify it against the registry's manifest now
                elif version in self.refused and not retry_refused:
                    raise ModelLoadError(f"version {version} was refused: {self.refused[version]}")
                model = self._load(version)
            except Exception as exc:
                fallback = self._fallback(exc) if current is None else None
                self._failed(exc, fallback)
                if isinstance(fallback, LoadedModel):
                    self._swap(fallback, None)
                raise
            self.refused.pop(version, None)
            self.last_error = self.last_error_kind = None
            self._swap(model, current)
        return RefreshResult(version, changed=True)

    def _swap(self, model: LoadedModel, previous: LoadedModel | None) -> None:
        self.current = model
        log.info(
            "serving.model_swapped model=%s version=%s source=%s previous=%s",
            model.name,
            model.version,
            model.source,
            previous.version if previous else None,
        )
        for callback in self.on_change:
            callback(model)

    def _load(self, version: str) -> LoadedModel:
        started = time.monotonic()
        try:
            # sha256 of every pulled file checked
            directory = self.registry.pull(
                version, self.cache_dir, files=self.served_files, optional=self.optional_files
            )
            manifest, _ = self.cache.cached_manifest(version)  # the one pull just verified
            model = self._start(version, manifest, directory, "registry")
        except Exception as exc:
            if not classify(exc).retried:
                self.refused[version] = str(exc)
            raise
        log.info(
            "serving.model_loaded model=%s version=%s seconds=%.2f",
            self.registry.model,
            version,
            time.monotonic() - started,
        )
        self._keep_cache(version)
        return model

    def _start(
        self, version: str, manifest: Manifest, directory: Path, source: Source
    ) -> LoadedModel:
        sig = GeneratorSignature.from_dict(manifest.signature)
        backend = self.factory(directory, sig)
        warm_up(backend, self.warmup_sizes)
        classifier = None
        if self.classifier_factory is not None and CLASSIFIER_NAME in manifest.files:
            classifier = self.classifier_factory(directory, sig)
            warm_up_classifier(classifier, backend)
        return LoadedModel(self.registry.model, version, manifest, backend, source, classifier)

    def _fallback(self, exc: Exception) -> LoadedModel | str | None:
        """When the registry cannot be asked: the alias's last version from the cache (verified
        again), or why it cannot be used (None when there is no reason to try)."""
        if classify(exc) not in (FailureKind.REGISTRY_UNREACHABLE, FailureKind.TIMEOUT):
            return None
        version = self.cache.remembered(self.alias)
        if version is None:
            return f"no version of {self.alias!r} cached in {self.cache.base} to serve meanwhile"
        try:
            # its signature is checked again (with trusted keys), then every file's sha256
            manifest, manifest_bytes = self.registry.verify_cached(version, self.cache_dir)
            served = manifest.present(self.served_files, self.optional_files)
            if not self.cache.holds(version, manifest_bytes, served):
                return f"cached version {version} failed verification: not served"
            model = self._start(version, manifest, self.cache.path(version), "cache")
        except Exception as cache_exc:
            return f"cached version {version} could not be loaded: {cache_exc}"
        log.warning(
            "serving.serving_cached alias=%s version=%s dir=%s",
            self.alias,
            version,
            self.cache.path(version),
        )
        return model

    def _keep_cache(self, version: str) -> None:
        """Remember what was served and drop old versions; a failure here costs no request."""
        try:
            self.cache.remember(self.alias, version)
        except CacheError as exc:
            log.warning("serving.cache_not_recorded version=%s error=%s", version, exc)
        protect = {version} | ({self.current.version} if self.current else set())
        self.cache.prune(self.keep_versions, protect)

    def _failed(self, exc: Exception, fallback: LoadedModel | str | None) -> None:
        serving = self.current.version if self.current else None
        kind = classify(exc)
        error = f"{kind}: {exc}"
        cached = fallback if isinstance(fallback, LoadedModel) else self.current
        if cached is not None and cached.source == "cache":
            error += f"; serving version {cached.version} from the local cache meanwhile"
        elif isinstance(fallback, str):
            error += f"; {fallback}"
        # Polling repeats the same failure (no model yet, registry down) every few seconds: warn
        # when it starts or changes, keep the repeats at debug level.
        level = logging.DEBUG if error == self.last_error else logging.WARNING
        self.last_error, self.last_error_kind = error, kind
        log.log(
            level,
            "serving.refresh_failed model=%s alias=%s serving=%s kind=%s error=%s",
            self.registry.model,
            self.alias,
            serving,
            kind.name.lower(),
            exc,
        )
        for callback in self.on_failure:
            callback(error)
