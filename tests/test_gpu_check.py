"""The GPU check's CPU dry run: tiny sizes, every step taken, one JSON written, and nothing
imported beyond what the GPU machine has plus the wheels the check names."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_check import BASE_PACKAGES, EXTRA_PACKAGES

REPO = Path(__file__).resolve().parents[1]

# The dry run on a Python that behaves like the GPU machine's: every installed distribution
# outside the allowed set (argv[1]) cannot be imported, as if it were not there.
DRY_RUN = """
import importlib.util, json, sys
from importlib.metadata import packages_distributions
allowed = set(json.loads(sys.argv[1]))
owners = packages_distributions()

def blocked(name):
    dists = {d.lower().replace("_", "-") for d in owners.get(name.split(".")[0], [])}
    return bool(dists) and not dists & allowed

class NotOnTheGpuMachine:
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

# A probe for an optional module (torch._dynamo probes hypothesis, for one) finds nothing.
real_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: (
    None if blocked(name) else real_find_spec(name, package)
)
sys.meta_path.insert(0, NotOnTheGpuMachine())
from benchmarks import gpu_check
print("PATH " + str(gpu_check.main(sys.argv[2:])))
"""


def _closure(names: list[str]) -> set[str]:
    """The distributions ``names`` are, and everything they require, recursively."""
    seen: set[str] = set()
    todo = [n.lower().replace("_", "-") for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            match = re.match(r"[A-Za-z0-9._-]+", req)
            if match:
                todo.append(match.group(0).lower().replace("_", "-"))
    return seen


def test_gpu_check_dry_run_on_cpu(tmp_path: Path) -> None:
    allowed = _closure([*BASE_PACKAGES.values(), *EXTRA_PACKAGES.values()])
    allowed |= {"dcgan-mnist-service", "pip", "setuptools"}
    args = ["--tiny", "--device", "cpu", "--out", str(tmp_path), "--tag", "dry-run"]
    done = subprocess.run(
        [sys.executable, "-c", DRY_RUN, json.dumps(sorted(allowed)), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path_line,) = [line for line in done.stdout.splitlines() if line.startswith("PATH ")]
    path = Path(path_line.removeprefix("PATH "))
    assert path.parent == tmp_path and path.name.startswith("gpu_check-dry-run-")
    results = json.loads(path.read_text())

    assert results["machine"]["cpu_isa"] and "precision" in results["machine"]
    for name in ("eager", "compiled"):
        run = results["training"][name]
        assert len(run["epochs"]) == 2 and run["best_epoch_seconds"] > 0
        assert run["precision"]["precision"] in ("fp32", "bf16")
        assert set(results["targets_met"][name]) == {"epoch_seconds", "gate_train_seconds"}
    ts = results["torchscript"]
    assert ts["parity_vs_cpu_max_abs"] == 0.0  # on the CPU the "device" is the CPU itself
    assert ts["row0_bytes_same_at_every_batch_size"] is True
    assert {f"torchscript_cpu_batch_{b}" for b in (1, 8, 64)} <= set(ts["throughput"])
    ort_cuda = results["onnxruntime_cuda"]
    if not torch.cuda.is_available():
        assert ort_cuda["ran"] is False and "onnxruntime-gpu" in ort_cuda["why_not"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: no CUDA GPU visible (use --device cpu --tiny for a dry run)"
    ]
    assert not list(tmp_path.iterdir())
