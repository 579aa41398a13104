"""Python client for the service: digits as numpy arrays, from your own code.

    from serving.tools.client import DigitsClient
    with DigitsClient("http://127.0.0.1:8000") as client:
        batch = client.generate(64, digits=3, seed=7)      # batch.images: uint8 (64, 28, 28)
        extra = client.balance(counts=[5923, 60, 5958, 61, 5842, 54, 5918, 62, 5851, 59])
        train = extra.training_set(real_images, real_labels)  # the recipe's arrays, below
        shirts = client.generate(8, digits=6, model="cdcgan-fashion-mnist")  # another model

Only httpx, numpy and the request schema (pydantic): nothing of the model or the server is
imported. A dataset on disk (an ImageFolder, .npz, IDX or Hugging Face dataset) is balanced in
its own format by ``serving.tools.dataset_balance`` (what `dcgan balance` runs)::

    from pathlib import Path
    from serving.tools.dataset_balance import ServiceSource, balance_dataset
    result = balance_dataset(Path("digits"), Path("digits-balanced"), ServiceSource(url), seed=7)
    print(result.before, result.added)  # images per class before, and how many were generated

A balance answer is all generated: ``synthetic`` is True and ``loss_weights`` is
``GENERATED_LOSS_WEIGHT`` for every image, ``real_counts`` the counts it filled from, and
``training_set`` the recipe's arrays (models/datasets/recipe.py: real rows weigh 1, generated
ones less, and the logit-adjusted loss's offsets come from the real counts).
"""

from __future__ import annotations

import io
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from models.contract import MAX_SEED, NUM_CLASSES, labels_for_request
from models.datasets.recipe import GENERATED_LOSS_WEIGHT, TrainingSet, training_set
from serving.core.errors import DatasetError as DatasetError  # re-exported: client users catch it
from serving.core.errors import ServiceError as ServiceError  # re-exported: client users catch it
from serving.core.generation import MAX_FILTERED_IMAGES_HEADER
from serving.core.schemas import BalanceRequest, Limits

DEFAULT_URL = "http://127.0.0.1:8000"
BUSY_RETRIES = 10  # a part of a split /balance refused as busy (503) is asked again this often
BUSY_WAIT_MAX_S = 60  # at most this long between two asks, whatever Retry-After says


@dataclass(frozen=True)
class Digits:
    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # int64 (N,)
    seed: int
    model: str
    version: str
    # Filtered answers only: the share of drawn candidates the classifier accepted.
    acceptance_rate: float | None = None


@dataclass(frozen=True)
class Balanced(Digits):
    """A /balance answer: generated images that fill a real dataset of ``real_counts`` images
    per class (the counts asked with, as 10 numbers)."""

    real_counts: tuple[int, ...] = ()

    @property
    def synthetic(self) -> np.ndarray:
        """bool (N,): whether each image is generated; all of an answer's are."""
        return np.ones(len(self.labels), dtype=bool)

    @property
    def loss_weights(self) -> np.ndarray:
        """float32 (N,): each image's suggested weight in the training loss (a real one: 1)."""
        return np.full(len(self.labels), GENERATED_LOSS_WEIGHT, dtype=np.float32)

    def training_set(self, real_images: np.ndarray, real_labels: np.ndarray) -> TrainingSet:
        """The real dataset these images fill, plus them: (images, labels, sample_weights,
        logit_offsets), ready for a weighted, logit-adjusted cross-entropy. DatasetError when
        the real labels are not the counts this balance filled."""
        counts = np.bincount(np.asarray(real_labels, dtype=np.int64), minlength=NUM_CLASSES)
        if counts.tolist() != list(self.real_counts):
            raise DatasetError(
                f"the real labels count {counts.tolist()} per class, but this balance filled "
                f"{list(self.real_counts)}: pass the dataset it was asked for"
            )
        return training_set(real_images, real_labels, self.images, self.labels, NUM_CLASSES)


class DigitsClient:
    def __init__(
        self, base_url: str = DEFAULT_URL, *, timeout: float = 120.0, retries: int = 2
    ) -> None:
        transport = httpx.HTTPTransport(retries=retries)  # connection failures only
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def __enter__(self) -> DigitsClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        response = self._send(method, path, body)
        _raise_for_detail(response)
        return response

    def _send(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """The server's answer, whatever its status; ServiceError if it cannot be reached."""
        try:
            return self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach {self._http.base_url}: {exc}") from exc

    def generate(
        self,
        n: int,
        digits: int | Sequence[int] | None = None,
        seed: int | None = None,
        min_confidence: float | None = None,
        model: str | None = None,
    ) -> Digits:
        """``n`` digits (one digit for all, one per image, or the 0..9 cycle) as uint8 arrays;
        with ``min_confidence``, only digits the version's classifier reads as asked; ``model``:
        which served model answers (default: the server's first)."""
        body: dict[str, Any] = {"batch_size": n, "format": "npy"}
        if digits is not None:
            body["digits"] = digits if isinstance(digits, int) else list(digits)
        _optional(body, seed=seed, min_confidence=min_confidence, model=model)
        response = self._request("POST", "/generate", body)
        images = np.load(io.BytesIO(response.content), allow_pickle=False)
        return _digits(response, images, labels_for_request(n, digits))

    def balance(
        self,
        counts: Sequence[int] | Mapping[int, int],
        target: int | Sequence[int] | Mapping[int, int] | None = None,
        seed: int | None = None,
        min_confidence: float | None = None,
        model: str | None = None,
    ) -> Balanced:
        """The generated digits that bring every class up to ``target`` (default: the largest),
        with what training on them needs (:class:`Balanced`).

        A filtered balance (``min_confidence``) is admitted by the server for its worst case
        (every image drawing every candidate), so a large one may be more than it ever queues:
        it answers 413 with the most images it takes (``X-Max-Filtered-Images``, M). Then this
        asks for the same images in parts instead: the images, sorted by digit as the server
        sorts them, cut into runs of M; the run starting at image a is asked with the seed
        ``part_seed(seed, a)`` (the first run: ``seed`` itself, so it is the prefix of the single
        answer), and a part refused as busy (503) is asked again after its Retry-After. So the
        same seed against a server with the same limits gives the same bytes, split or not;
        ``seed`` is drawn here when omitted. Every part must come from one model version.
        """
        body: dict[str, Any] = {"counts": _jsonable(counts)}
        if target is not None:
            body["target"] = target if isinstance(target, int) else _jsonable(target)
        _optional(body, seed=seed, min_confidence=min_confidence, model=model)
        response = self._send("POST", "/balance", body)
        most = response.headers.get(MAX_FILTERED_IMAGES_HEADER, "")
        if response.status_code == 413 and min_confidence is not None and most.isdigit():
            got = self._balance_in_parts(body, int(most))
        else:
            _raise_for_detail(response)
            got = _balance_digits(response)
        real = _per_class(body)[0]
        return Balanced(**{f.name: getattr(got, f.name) for f in fields(got)}, real_counts=real)

    def _balance_in_parts(self, body: dict[str, Any], part_size: int) -> Digits:
        """``body``'s images as several /balance requests of at most ``part_size`` images."""
        if part_size < 1:
            raise ServiceError("the server takes no filtered /balance request at all", 413)
        seed = body.get("seed")
        seed = secrets.randbelow(MAX_SEED + 1) if seed is None else int(seed)
        deficits = _per_class(body)[1]
        labels = np.repeat(np.arange(len(deficits), dtype=np.int64), deficits)
        parts: list[Digits] = []
        candidates = 0
        for start in range(0, len(labels), part_size):
            run = labels[start : start + part_size]
            part = {
                **body,
                "counts": [0] * len(deficits),
                "target": np.bincount(run, minlength=len(deficits)).tolist(),
                "seed": part_seed(seed, start),
            }
            response = self._send_until_admitted("/balance", part)
            parts.append(_balance_digits(response))
            candidates += int(response.headers.get("x-filter-candidates", len(run)))
        versions = {(p.model, p.version) for p in parts}
        if len(versions) > 1:
            raise ServiceError(
                f"the server's model changed while a split /balance ran ({sorted(versions)}): "
                "ask again for one version's images"
            )
        first = parts[0]
        return Digits(
            images=np.concatenate([p.images for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            seed=seed,
            model=first.model,
            version=first.version,
            acceptance_rate=len(labels) / candidates if candidates else 1.0,
        )

    def _send_until_admitted(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        """POST ``body``, asked again after the server's Retry-After while it answers 503 (at
        most BUSY_RETRIES times), so one busy moment does not lose the parts already done."""
        for attempt in range(BUSY_RETRIES + 1):
            response = self._send("POST", path, body)
            if response.status_code != 503 or attempt == BUSY_RETRIES:
                break
            retry = response.headers.get("retry-after", "1")
            time.sleep(min(BUSY_WAIT_MAX_S, int(retry) if retry.isdigit() else 1))
        _raise_for_detail(response)
        return response

    def models(self) -> list[dict[str, Any]]:
        """Every served model (name, alias, ready, version, signature, metrics), the default
        first."""
        served: list[dict[str, Any]] = self._request("GET", "/models").json()["models"]
        return served

    def model(self, name: str | None = None) -> dict[str, Any]:
        """One served model's loaded version (default: the server's first); ServiceError (503)
        while it has none loaded."""
        path = "/models" if name is None else f"/models/{quote(name, safe='')}"
        info: dict[str, Any] = self._request("GET", path).json()
        if name is None:
            info = info["models"][0]
        if not info["ready"]:
            raise ServiceError(f"model {info['model']!r} has no version loaded yet", 503)
        return info

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False


def part_seed(seed: int, start: int) -> int:
    """The seed of the part of a split filtered /balance that starts at image ``start``: the
    request's own for the first part, else one drawn from (seed, start) by numpy's SeedSequence
    (so parts never repeat each other's candidates)."""
    if start == 0:
        return seed
    state = np.random.SeedSequence((seed, start)).generate_state(1, np.uint64)
    return int(state[0]) & MAX_SEED


def _per_class(body: Mapping[str, Any]) -> tuple[tuple[int, ...], list[int]]:
    """A /balance ``body``'s counts as 10 numbers and the images per class the server generates
    for it (its own arithmetic: serving.core.schemas.BalanceRequest), read without this client's
    guess at the server's limits."""
    unbounded = Limits(max_balance_images=sys.maxsize, max_class_count=sys.maxsize)
    given = {key: body[key] for key in ("counts", "target") if key in body}
    request = BalanceRequest.model_validate(given, context={"limits": unbounded})
    counts = request.counts
    assert isinstance(counts, list), "per-class counts are normalised to a list"
    return tuple(counts), request.deficits()


def _balance_digits(response: httpx.Response) -> Digits:
    with np.load(io.BytesIO(response.content), allow_pickle=False) as npz:
        return _digits(response, npz["images"], npz["labels"])


def _optional(body: dict[str, Any], **fields: Any) -> None:
    """Send what was given; an omitted field keeps the server's default."""
    body.update({key: value for key, value in fields.items() if value is not None})


def _jsonable(value: Sequence[int] | Mapping[int, int]) -> list[int] | dict[str, int]:
    if isinstance(value, Mapping):
        return {str(k): int(v) for k, v in value.items()}
    return [int(v) for v in value]


def _digits(response: httpx.Response, images: np.ndarray, labels: np.ndarray) -> Digits:
    headers = response.headers
    return Digits(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        seed=int(headers["x-seed"]),
        model=headers["x-model-name"],
        version=headers["x-model-version"],
        acceptance_rate=(
            float(headers["x-filter-acceptance-rate"])
            if "x-filter-acceptance-rate" in headers
            else None
        ),
    )


def _raise_for_detail(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise ServiceError(
        f"{response.status_code} from {response.url.path}: {detail}", response.status_code
    )
