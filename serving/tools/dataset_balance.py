"""`dcgan balance PATH`: fill a dataset's rare classes with generated images, in its own format.

The images come from a running service (``/balance``) or straight from a registry model, verified
as the server verifies it, without a server: the same digit service (``serving.core.digits``),
filter included, so for the same model, counts and seed both give the same bytes as
``POST /balance`` (a filtered request the server would split excepted: the client splits it, this
runs it whole).
A dataset with nothing missing is left alone (running the command on its own output adds nothing).

The dataset is untrusted input (models/datasets/files.py): PATH is resolved once, then its format
is found and the journal and leftovers of earlier runs are settled before any model is asked;
the model's shape comes next, so every header is checked against it before anything is decoded.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.contract import DEFAULT_MAX_CANDIDATES, GeneratorSignature
from models.datasets.files import DatasetLimits, remove_stale, resolve
from models.registry.settings import RegistrySettings, open_registry, registry_settings
from serving.core.decoding import validate
from serving.core.digits import ChunkedRunner, DigitService, run_now
from serving.core.errors import DatasetError
from serving.core.generation import plan_balance, resolve_seed
from serving.core.lifecycle import LoadedModel, ModelManager, onnx_classifier_factory, onnx_factory
from serving.core.onnx_backend import usable_cores
from serving.core.schemas import BalanceRequest, Limits
from serving.tools.client import DigitsClient
from serving.tools.dataset_journal import STAGING_PREFIX, finish_pending, require_no_pending
from serving.tools.datasets import (
    Dataset,
    Format,
    Provenance,
    add_in_place,
    detect,
    read_dataset,
    require_in_place,
    write_balanced,
)

CHUNK = 1024  # images per backend or classifier call when generating locally


@dataclass(frozen=True)
class Generated:
    images: np.ndarray  # uint8 (N, H, W), sorted by class
    labels: np.ndarray  # int64 (N,)
    provenance: Provenance


class ImageSource(Protocol):
    """Where generated images come from: a running service or a registry model."""

    def signature(self) -> GeneratorSignature: ...

    def balance(
        self, counts: list[int], target: int | None, seed: int, min_confidence: float | None
    ) -> Generated: ...


class ServiceSource:
    """A running service, over HTTP (serving.tools.client); ``model``: which of its models (default:
    the server's first)."""

    def __init__(self, url: str, model: str | None = None) -> None:
        self.url = url
        self.model = model
        self._info: dict[str, Any] | None = None

    def _model(self) -> dict[str, Any]:
        if self._info is None:
            with DigitsClient(self.url) as client:
                self._info = client.model(self.model)
        return self._info

    def signature(self) -> GeneratorSignature:
        return GeneratorSignature.from_dict(self._model()["signature"])

    def balance(
        self, counts: list[int], target: int | None, seed: int, min_confidence: float | None
    ) -> Generated:
        with DigitsClient(self.url) as client:
            got = client.balance(
                counts, target=target, seed=seed, min_confidence=min_confidence, model=self.model
            )
        metrics = self._model().get("metrics")
        provenance = Provenance(
            got.model,
            got.version,
            got.seed,
            self.url,
            min_confidence,
            dict(metrics) if isinstance(metrics, dict) else {},
        )
        return Generated(got.images, got.labels, provenance)


class RegistrySource:
    """A registry model (DCGAN_REGISTRY_*; ``model``: another model name in that registry),
    pulled, verified and run in-process on ONNX Runtime."""

    def __init__(
        self, alias: str, settings: RegistrySettings | None = None, model: str | None = None
    ) -> None:
        self.settings = settings or registry_settings()
        if model is not None:
            self.settings = self.settings.model_copy(update={"model_name": model})
        self._cache = tempfile.TemporaryDirectory(prefix="dcgan-balance-")
        threads = usable_cores()
        self.manager = ModelManager(
            open_registry(self.settings),
            Path(self._cache.name),
            onnx_factory("cpu", threads),
            alias=alias,
            warmup_sizes=(1,),
            classifier_factory=onnx_classifier_factory("cpu", threads),
        )
        self.digits = DigitService(ChunkedRunner(CHUNK), DEFAULT_MAX_CANDIDATES)

    def close(self) -> None:
        """Remove the pulled files (a temporary cache of this source's own)."""
        self._cache.cleanup()

    def __enter__(self) -> RegistrySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _loaded(self) -> LoadedModel:
        if self.manager.current is None:
            self.manager.refresh()
        return self.manager.require()

    def signature(self) -> GeneratorSignature:
        return self._loaded().signature

    def balance(
        self, counts: list[int], target: int | None, seed: int, min_confidence: float | None
    ) -> Generated:
        model = self._loaded()
        fields = {
            "counts": counts,
            "target": target,
            "seed": seed,
            "min_confidence": min_confidence,
        }
        request = validate(BalanceRequest, fields, Limits())  # the server's rules and messages
        plan = plan_balance(request, model.signature)
        answer = run_now(self.digits.answer(model, plan, request.min_confidence))
        provenance = Provenance(
            model.name,
            model.version,
            answer.seed,
            self.settings.uri,
            min_confidence,
            model.manifest.metrics,
        )
        return Generated(answer.pixels, answer.labels, provenance)


@dataclass(frozen=True)
class BalanceResult:
    source: Dataset
    before: list[int]
    added: list[int]
    out: Path | None  # None: nothing was missing, nothing written
    provenance: Provenance | None
    finished_interrupted: bool = False  # an interrupted in-place run was completed first


def balance_dataset(
    path: Path,
    out: Path,
    images_from: ImageSource,
    *,
    target: int | None = None,
    seed: int | None = None,
    min_confidence: float | None = None,
    in_place: bool = False,
    progress: bool = False,
    limits: DatasetLimits | None = None,
) -> BalanceResult:
    """Read ``path``, fetch what each class lacks up to ``target`` (default: the largest class),
    write the balanced dataset as ``out`` (or, ``in_place``, add to an ImageFolder itself);
    nothing is written when nothing is missing."""
    limits = limits or DatasetLimits()
    path = resolve(path)
    fmt = detect(path)
    finished = _settle_earlier_runs(path, fmt, in_place, limits)
    sig = images_from.signature()
    if not sig.conditional:
        raise DatasetError("the model is unconditional: balancing needs a conditional model")
    dataset = read_dataset(path, sig.num_classes, sig.image_size, limits)
    before = dataset.counts(sig.num_classes)
    wanted = max(before) if target is None else target
    missing = [max(0, wanted - count) for count in before]
    if not any(missing):
        return BalanceResult(dataset, before, missing, None, None, finished)
    generated = images_from.balance(before, target, resolve_seed(seed), min_confidence)
    images, labels, provenance = generated.images, generated.labels, generated.provenance
    if in_place:
        add_in_place(
            dataset, images, labels, provenance, sig.num_classes, progress=progress, limits=limits
        )
    else:
        write_balanced(
            dataset,
            images,
            labels,
            provenance,
            out,
            sig.num_classes,
            progress=progress,
            limits=limits,
        )
    added = [int(n) for n in np.bincount(labels, minlength=sig.num_classes)]
    return BalanceResult(dataset, before, added, path if in_place else out, provenance, finished)


def _settle_earlier_runs(path: Path, fmt: Format, in_place: bool, limits: DatasetLimits) -> bool:
    """Before a model is asked: in place, finish a committed journal (refused unless this command
    wrote it for this directory) and remove a killed run's staging; otherwise refuse a dataset
    with an unfinished journal (never copied). Whether an interrupted run was finished."""
    if in_place:
        require_in_place(fmt, path)
        finished = finish_pending(path, limits)
        remove_stale(path, STAGING_PREFIX)
        return finished
    if fmt is Format.IMAGEFOLDER:
        require_no_pending(path)
    return False
