"""Provider choice with the real onnxruntime of this machine (a CPU build): CUDA only when its
provider actually starts a session, a clear error when device=cuda cannot have it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.contract import GeneratorSignature
from models.registry import LocalStore, ModelRegistry
from serving.core import onnx_backend
from serving.core.errors import ModelLoadError
from serving.core.onnx_backend import (
    CPU,
    CUDA,
    OnnxBackend,
    choose_providers,
    cuda_problem,
    inference_pool,
)
from tests.serving.conftest import MODEL, VERSIONS


@pytest.fixture(autouse=True)
def fresh_probe() -> Iterator[None]:
    cuda_problem.cache_clear()
    yield
    cuda_problem.cache_clear()


@pytest.fixture
def cuda_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """What onnxruntime-gpu reports without a GPU or its CUDA libraries: the provider is listed."""
    monkeypatch.setattr(onnx_backend.ort, "get_available_providers", lambda: [CUDA, CPU])


def test_cpu_build_serves_on_cpu() -> None:
    problem = cuda_problem()
    assert problem is not None and f"has no {CUDA}" in problem
    assert choose_providers("auto") == [CPU]
    assert choose_providers("cpu") == [CPU]
    with pytest.raises(ModelLoadError, match="device=cuda but this onnxruntime has no"):
        choose_providers("cuda")


def test_listed_but_not_starting_cuda_is_not_chosen(cuda_listed: None) -> None:
    problem = cuda_problem()
    assert problem is not None and "built in but did not start" in problem
    assert choose_providers("auto") == [CPU]
    with pytest.raises(ModelLoadError, match=r"device=cuda but .* did not start"):
        choose_providers("cuda")


def test_pool_is_sized_for_the_cpu_when_cuda_does_not_start(cuda_listed: None) -> None:
    cores = onnx_backend.usable_cores()
    assert inference_pool("auto") == (cores, 1)
    assert inference_pool("auto", workers=1) == (1, cores)


def test_backend_refuses_cuda_it_cannot_have(
    cuda_listed: None, published_registry: Path, tmp_path: Path
) -> None:
    registry = ModelRegistry(LocalStore(published_registry), MODEL)
    signature = GeneratorSignature.from_dict(registry.show(VERSIONS[0]).signature)
    onnx_path = registry.pull(VERSIONS[0], tmp_path) / "generator.onnx"
    assert OnnxBackend(onnx_path, signature, device="auto").providers == [CPU]
    with pytest.raises(ModelLoadError, match="device=cuda"):
        OnnxBackend(onnx_path, signature, device="cuda")
