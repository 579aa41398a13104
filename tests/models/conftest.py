"""The two stores every registry test runs against: a local directory and a real S3 server
(SeaweedFS on loopback, see tests/s3_server.py), with small files to publish."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from models.registry import LocalStore, ModelRegistry, S3Store
from tests.s3_server import S3TestServer

MODEL = "mnist-test"
KiB = 1024


class CountingDownloads:
    """Mixed into a real store: counts object downloads (what a pull fetched)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.downloads: Counter[str] = Counter()

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        self.downloads[key] += 1
        yield from super().iter_chunks(key)  # type: ignore[misc]


class CountingLocalStore(CountingDownloads, LocalStore):
    pass


class CountingS3Store(CountingDownloads, S3Store):
    pass


@dataclass
class Backend:
    kind: str
    store: CountingLocalStore | CountingS3Store
    spec: dict[str, Any]  # how a child process opens the same store
    env: dict[str, str] = field(default_factory=dict)

    def registry(self, **kwargs: Any) -> ModelRegistry:
        return ModelRegistry(self.store, MODEL, **kwargs)

    def objects(self) -> dict[str, str]:
        """Every object under the model, with its etag."""
        return {info.key: info.etag for info in self.store.list(f"{MODEL}/")}


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        root = tmp_path / "registry"
        return Backend("local", CountingLocalStore(root), {"kind": "local", "root": str(root)})
    server: S3TestServer = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return Backend(
        "s3",
        CountingS3Store(bucket, server.settings()),
        {"kind": "s3", "bucket": bucket},
        env=server.env(),
    )


def write_file(path: Path, size: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = uuid.UUID(int=seed).bytes * 64  # 1 KiB, distinct per seed
    path.write_bytes((block * (size // len(block) + 1))[:size])
    return path


@pytest.fixture
def artifacts(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    return {
        "generator.onnx": write_file(src / "generator.onnx", 300 * KiB, 1),
        "generator.torchscript.pt": write_file(src / "generator.torchscript.pt", 200 * KiB, 2),
        "checkpoint.pt": write_file(src / "checkpoint.pt", 500 * KiB, 3),
        "samples.png": write_file(src / "samples.png", 3 * KiB, 4),
    }


def publish(registry: ModelRegistry, files: dict[str, Path], version: str, **kw: Any) -> Any:
    return registry.publish(files, version=version, metrics={"accuracy": 0.9, "fid": 11.0}, **kw)
