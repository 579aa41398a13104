"""Python client for the service: digits as numpy arrays, from your own code.

    from serving.client import DigitsClient
    with DigitsClient("http://127.0.0.1:8000") as client:
        batch = client.generate(64, digits=3, seed=7)      # batch.images: uint8 (64, 28, 28)
        extra = client.balance(counts=[5923, 60, 5958, 61, 5842, 54, 5918, 62, 5851, 59])
        shirts = client.generate(8, digits=6, model="cdcgan-fashion-mnist")  # another model

Only httpx and numpy: nothing of the model or the server is imported. A dataset on disk (an
ImageFolder, .npz, IDX or Hugging Face dataset) is balanced in its own format by
``serving.dataset_balance`` (what `dcgan balance` runs)::

    from pathlib import Path
    from serving.dataset_balance import ServiceSource, balance_dataset
    result = balance_dataset(Path("digits"), Path("digits-balanced"), ServiceSource(url), seed=7)
    print(result.before, result.added)  # images per class before, and how many were generated
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from models.contract import labels_for_request
from serving.errors import ServiceError  # re-exported: client users catch it here

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Digits:
    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # int64 (N,)
    seed: int
    model: str
    version: str
    # Filtered answers only: the share of drawn candidates the classifier accepted.
    acceptance_rate: float | None = None


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
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach {self._http.base_url}: {exc}") from exc
        _raise_for_detail(response)
        return response

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
    ) -> Digits:
        """The generated digits that bring every class up to ``target`` (default: the largest)."""
        body: dict[str, Any] = {"counts": _jsonable(counts)}
        if target is not None:
            body["target"] = target if isinstance(target, int) else _jsonable(target)
        _optional(body, seed=seed, min_confidence=min_confidence, model=model)
        response = self._request("POST", "/balance", body)
        with np.load(io.BytesIO(response.content), allow_pickle=False) as npz:
            return _digits(response, npz["images"], npz["labels"])

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
