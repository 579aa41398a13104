"""Describe the machine a benchmark ran on, so every recorded figure names its hardware."""

from __future__ import annotations

import datetime as dt
import os
import platform
from typing import Any


def cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_isa() -> str:
    """The widest vector/matrix instruction set the CPU has (from its flags, torch-free):
    AMX-bf16, AVX-512-bf16, AVX-512, AVX2, or what is known of it otherwise."""
    flags = set((cpuinfo_field("flags") or "").split())
    for flag, name in (
        ("amx_bf16", "AMX-bf16"),
        ("avx512_bf16", "AVX-512-bf16"),
        ("avx512f", "AVX-512"),
        ("avx2", "AVX2"),
    ):
        if flag in flags:
            return name
    return platform.machine() or "unknown"


def describe() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cpu_isa": cpu_isa(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = str(torch.__version__)
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
        from pipeline.precision import decide

        info["precision"] = decide("cuda" if torch.cuda.is_available() else "cpu").to_dict()
    except ImportError:
        pass
    return info
