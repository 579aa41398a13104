"""Describe the machine a benchmark ran on (lives in pipeline/, shared with the experiments), and
what its cores could compute at most, so a measured GFLOP/s can be read against that."""

from __future__ import annotations

from pipeline.machine import cpu_isa, cpuinfo_field, describe

# fp32 FLOPs per cycle per core: two FMA units, each 8 (AVX2) or 16 (AVX-512) lanes, 2 FLOPs
# (multiply + add) per lane. AMX and AVX-512-bf16 CPUs are counted at their fp32 AVX-512 rate.
FP32_FLOPS_PER_CYCLE = {"AVX2": 32, "AVX-512": 64, "AVX-512-bf16": 64, "AMX-bf16": 64}


def fp32_peak_gflops(cores: int) -> dict[str, float | str] | None:
    """Nominal fp32 peak of ``cores`` cores: cores x clock (/proc/cpuinfo) x FLOPs/cycle.

    A ceiling, not a promise: turbo, AVX frequency offsets and shared FMA ports move it.
    """
    isa, mhz = cpu_isa(), cpuinfo_field("cpu MHz")
    if isa not in FP32_FLOPS_PER_CYCLE or mhz is None:
        return None
    per_cycle = FP32_FLOPS_PER_CYCLE[isa]
    return {
        "gflops": cores * float(mhz) / 1000 * per_cycle,
        "basis": f"{cores} cores x {float(mhz):.0f} MHz x {per_cycle} fp32 FLOPs/cycle ({isa})",
    }


__all__ = ["FP32_FLOPS_PER_CYCLE", "describe", "fp32_peak_gflops"]
