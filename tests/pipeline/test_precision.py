"""The precision decision matches the machine the test runs on, and the override wins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from pipeline import precision
from pipeline.evaluation.classifier import ClassifierRecipe
from pipeline.machine import cpu_isa
from pipeline.settings import get_settings


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(precision.ENV_VAR, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _cpu_flags() -> set[str]:
    """The CPU's flags as the kernel lists them, read here independently of the code."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    pytest.fail("/proc/cpuinfo has no flags line")


def test_cpu_decision_matches_this_machine() -> None:
    flags = _cpu_flags()
    decision = precision.decide("cpu")
    native = bool({"amx_bf16", "avx512_bf16"} & flags)
    if native:
        assert decision.precision == "bf16", decision
    elif "avx512f" not in flags:  # AVX2 or less: bf16 would be emulated, many times slower
        assert decision.precision == "fp32", decision
        assert torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT", "NO AVX")
    else:  # AVX-512 without bf16: the timing probe decided, and says so
        assert "timing probe" in decision.reason, decision
    assert cpu_isa() in decision.reason
    assert decision.to_dict() == {
        "precision": decision.precision,
        "device": "cpu",
        "reason": decision.reason,
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_decision_matches_this_gpu() -> None:
    want = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert precision.decide("cuda").precision == want


@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_environment_override_applies_everywhere(
    monkeypatch: pytest.MonkeyPatch, forced: str
) -> None:
    monkeypatch.setenv(precision.ENV_VAR, forced)
    get_settings.cache_clear()
    decision = precision.decide("cpu")
    assert decision.precision == forced and precision.ENV_VAR in decision.reason
    assert ClassifierRecipe().precision_on("cpu") == forced
    # an explicit request (dcgan train --precision) still wins over the environment
    other = "fp32" if forced == "bf16" else "bf16"
    assert precision.decide("cpu", other).precision == other  # type: ignore[arg-type]


def test_bad_override_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(precision.ENV_VAR, "fp8")
    get_settings.cache_clear()
    with pytest.raises(ValidationError, match="precision"):
        precision.decide("cpu")


def test_classifier_cache_key_holds_the_precision() -> None:
    auto = ClassifierRecipe()
    fp32, bf16 = ClassifierRecipe(precision="fp32"), ClassifierRecipe(precision="bf16")
    assert fp32.hash != bf16.hash
    decided = auto.resolved("cpu")
    assert decided.precision == precision.decide("cpu").precision
    assert decided.hash == (fp32 if decided.precision == "fp32" else bf16).hash


def test_autocast_follows_the_decision() -> None:
    x = torch.randn(4, 8)
    layer = torch.nn.Linear(8, 2)
    for chosen in ("fp32", "bf16"):
        decision = precision.PrecisionDecision(chosen, "cpu", "test")  # type: ignore[arg-type]
        with decision.autocast(torch.device("cpu")):
            out = layer(x)
        assert out.dtype == (torch.bfloat16 if chosen == "bf16" else torch.float32)
