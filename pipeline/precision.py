"""The one precision decision for every torch computation: bf16 autocast or plain fp32.

Trainer, evaluation classifier, train-on-synthetic, benchmarks and experiments all ask
``decide(device)``. bf16 is chosen only where the device runs it natively, because emulated bf16
is far slower than fp32 (measured on an AVX2-only AMD EPYC with torch 2.13: 9x per classifier
step, 18-31x per G+D step):

- CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and newer);
- CPU: the instruction set torch reports. AVX-512 bf16 or AMX tiles: bf16. AVX2 or less: fp32.
  AVX-512 without the bf16 flags (oneDNN may still accept bf16 there, through conversions): a
  short timing probe of a conv training step in both precisions decides, once per process.

``DCGAN_PRECISION`` (auto | fp32 | bf16) overrides the decision everywhere; a computation that is
given an explicit precision (``dcgan train --precision``) uses that. The decision and its reason
go into every recorded metric, and the evaluation classifier's cache key holds the precision.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import torch
from torch import nn

from pipeline.machine import cpu_isa
from pipeline.settings import PrecisionChoice, get_settings

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]
ENV_VAR = "DCGAN_PRECISION"  # PipelineSettings.precision
# bf16 must beat fp32 by this factor in the probe to be chosen: a tie is not worth the rounding.
PROBE_MIN_SPEEDUP = 1.2


@dataclass(frozen=True)
class PrecisionDecision:
    """What a computation on ``device`` runs in, and why (recorded beside its figures)."""

    precision: Precision
    device: str  # "cpu" or "cuda"
    reason: str

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        """bf16 autocast on ``device`` when bf16 was chosen, else nothing."""
        if self.bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return nullcontext()

    def to_dict(self) -> dict[str, str]:
        return {"precision": self.precision, "device": self.device, "reason": self.reason}


def _flag(name: str) -> bool:
    """A private ``torch.cpu._is_*_supported()`` probe; False where this torch lacks it."""
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if callable(probe) else False
    except Exception:  # a private API that changed shape is "not supported", never fatal
        return False


def cpu_capability() -> dict[str, Any]:
    """What torch sees of this CPU: its kernel level and the native bf16 paths."""
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": _flag("_is_avx512_bf16_supported"),
        "amx_tile": _flag("_is_amx_tile_supported"),
        "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    }


def _probe_step_seconds(bf16: bool, steps: int = 3) -> float:
    """Seconds per training step of a small conv net at batch 128, after one warm-up step."""
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.Flatten(),
        nn.Linear(64 * 14 * 14, 10),
    )  # fmt: skip
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(128, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (128,), generator=gen)
    best = float("inf")
    for step in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(net(x).float(), y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if step:
            best = min(best, time.perf_counter() - t)
    return best


@lru_cache
def _cpu_auto() -> PrecisionDecision:
    caps = cpu_capability()
    isa = cpu_isa()
    if caps["amx_tile"] or caps["avx512_bf16"]:
        return PrecisionDecision("bf16", "cpu", f"CPU {isa}: native bf16")
    if caps["capability"] != "AVX512" or not caps["onednn_bf16"]:
        return PrecisionDecision("fp32", "cpu", f"CPU {isa}: no native bf16 (emulated is slower)")
    fp32_s, bf16_s = _probe_step_seconds(False), _probe_step_seconds(True)
    speedup = fp32_s / bf16_s
    chosen: Precision = "bf16" if speedup >= PROBE_MIN_SPEEDUP else "fp32"
    reason = f"CPU {isa} without bf16 flags: timing probe bf16 {speedup:.2f}x fp32"
    log.info("precision probe: fp32 %.1f ms, bf16 %.1f ms", fp32_s * 1e3, bf16_s * 1e3)
    return PrecisionDecision(chosen, "cpu", reason)


def decide(device: torch.device | str, requested: PrecisionChoice = "auto") -> PrecisionDecision:
    """The precision for computations on ``device``: ``requested`` if explicit, else the
    ``DCGAN_PRECISION`` override, else what the device runs natively."""
    device = torch.device(device)
    kind = "cuda" if device.type == "cuda" else "cpu"
    if requested == "auto":
        requested = get_settings().precision
        source = f"{ENV_VAR}={requested}"
    else:
        source = "asked for"
    if requested != "auto":
        return PrecisionDecision(requested, kind, source)
    if kind == "cuda":
        ok = bool(torch.cuda.is_bf16_supported())
        name = torch.cuda.get_device_name(device)
        return PrecisionDecision(
            "bf16" if ok else "fp32", "cuda", f"GPU {name}: bf16 {'supported' if ok else 'absent'}"
        )
    return _cpu_auto()


__all__ = [
    "ENV_VAR",
    "Precision",
    "PrecisionChoice",
    "PrecisionDecision",
    "cpu_capability",
    "decide",
]
