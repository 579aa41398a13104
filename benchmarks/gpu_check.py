"""The GPU check: one command that measures what only a CUDA machine can show, in minutes.

    python -m benchmarks.gpu_check                       # on a CUDA machine (about 5 minutes)
    python -m benchmarks.gpu_check --tiny --device cpu   # the dry run the tests make

It (1) trains the default recipe on the GPU in the precision ``pipeline.precision`` decides (bf16
where supported), data resident on the device, eager and with ``torch.compile``, judging the
quality gate after every epoch off the clock: seconds per epoch and training time to the gate;
(2) checks TorchScript inference on CUDA against the CPU (max difference, and whether a row's
uint8 bytes change with the batch size it is computed in); (3) measures images/s at batch 1, 64
and 1024 (TorchScript on the device; ONNX Runtime on the CPU beside it); (4) runs the serving
engine's CUDA execution provider path when onnxruntime-gpu is importable, and says plainly when
it is not; and writes one JSON under benchmarks/results/ (or ``--out``).

Needs only torch, numpy, onnx, onnxruntime, onnxscript, Pillow and tqdm, plus the small
pure-Python wheels in ``EXTRA_PACKAGES`` (checked first; a one-line error names what is missing).
No internet: MNIST is read from ``--data`` (a directory with the four IDX files, raw or .gz)
or ./data/mnist.
Targets on an H100/H200: one MNIST epoch <= 1 s, the gate in <= 60 s of training.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Beyond BASE_PACKAGES (on the GPU machine already): what the project's modules import on this
# path. Bring them as wheels (the device README says how).
EXTRA_PACKAGES = {
    "pydantic": "pydantic",
    "pydantic_core": "pydantic-core",
    "pydantic_settings": "pydantic-settings",
    "annotated_types": "annotated-types",
    "typing_inspection": "typing-inspection",
    "dotenv": "python-dotenv",
}
# module -> distribution of what the GPU machine has (its package list in the device README).
BASE_PACKAGES = {
    "torch": "torch",
    "numpy": "numpy",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript",
    "PIL": "pillow",
    "tqdm": "tqdm",
}
RESULTS = Path(__file__).parent / "results"
TARGETS = {"epoch_seconds": 1.0, "gate_train_seconds": 60.0}
THROUGHPUT_BATCHES = (1, 64, 1024)


def missing_packages() -> list[str]:
    """Distribution names of the needed packages that this Python cannot import."""
    missing = [name for name in BASE_PACKAGES if importlib.util.find_spec(name) is None]
    missing += [
        dist for mod, dist in EXTRA_PACKAGES.items() if importlib.util.find_spec(mod) is None
    ]
    return missing


def _no_sync() -> None:
    """CPU work is done when the call returns."""


def _timed(fn: Callable[[], object], sync: Callable[[], None], repeats: int) -> float:
    """Best-of-``repeats`` seconds of ``fn`` after one warm-up call, synchronised each time."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - started)
    return best


def train_and_gate(
    args: argparse.Namespace, device: Any, dataset: Any, compile_networks: bool, judge: Any
) -> tuple[dict[str, Any], Any]:
    """Train the recipe epoch by epoch (eager or compiled) and judge the gate after each;
    returns the figures and the trained generator."""
    from benchmarks.train_speed import race, trainer_epoch
    from pipeline.train import GANTrainer
    from pipeline.train_config import TrainConfig

    cfg = TrainConfig(device=str(device), compile=compile_networks, **args.recipe)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as out:
        trainer = GANTrainer(cfg.model_copy(update={"epochs": 0}), Path(out))
        trainer.dataset_info = {"name": dataset.name, "md5": dataset.md5, "limit": cfg.limit}
        images, labels = dataset.train_subset(cfg.limit, cfg.seed)
        name = "compiled" if compile_networks else "eager"
        result = race(
            name,
            lambda: trainer_epoch(trainer, images, labels),
            trainer.served_generator,
            cfg,
            dataset,
            judge,
            args.epochs,
            stop_at_gate=False,
        )
    result["precision"] = trainer.precision.to_dict()
    result["first_epoch_seconds"] = result["epochs"][0]["seconds"]  # compile time lands here
    later = [r["seconds"] for r in result["epochs"][1:]] or [result["first_epoch_seconds"]]
    result["best_epoch_seconds"] = min(later)
    return result, trainer.served_generator


def torchscript_checks(
    generator: Any, cfg: Any, device: Any, batches: Sequence[int], repeats: int
) -> dict[str, Any]:
    """Export to TorchScript; compare CUDA with CPU, row bytes across batch sizes, images/s."""
    import numpy as np
    import torch

    from models.contract import labels_for_request, latent_for_seed, to_uint8
    from pipeline.export import export_generator

    with tempfile.TemporaryDirectory(prefix="gpu-check-export-") as tmp:
        exported = export_generator(generator, cfg, Path(tmp) / "export")
        ts_path = Path(tmp) / "export" / "generator.torchscript.pt"
        load = torch.jit.load
        on_cpu = load(str(ts_path), map_location="cpu").eval()  # type: ignore[no-untyped-call]
        on_device = load(str(ts_path), map_location=device).eval()  # type: ignore[no-untyped-call]
        onnx_bytes = (Path(tmp) / "export" / "generator.onnx").read_bytes()

    n = max(batches)
    z = torch.from_numpy(latent_for_seed(7, n, cfg.latent_dim))
    labels = torch.from_numpy(labels_for_request(n, None))
    sync = torch.cuda.synchronize if device.type == "cuda" else _no_sync

    @torch.inference_mode()
    def run(module: Any, dev: Any, count: int) -> np.ndarray:
        out = module(z[:count].to(dev), labels[:count].to(dev))
        return np.asarray(out.float().cpu().numpy())

    cpu_out, dev_out = run(on_cpu, "cpu", n), run(on_device, device, n)
    rows = {b: to_uint8(run(on_device, device, b))[:1] for b in batches}
    first = rows[min(batches)]
    checks: dict[str, Any] = {
        "parity_vs_cpu_max_abs": float(np.abs(cpu_out - dev_out).max()),
        "parity_vs_cpu_uint8_pixels_differing": int((to_uint8(cpu_out) != to_uint8(dev_out)).sum()),
        "row0_bytes_same_at_every_batch_size": all(np.array_equal(first, r) for r in rows.values()),
        "row0_bytes_batches": list(batches),
        "export_parity": exported.to_manifest().get("parity"),
    }

    throughput: dict[str, Any] = {}
    for b in batches:
        seconds = _timed(functools.partial(run, on_device, device, b), sync, repeats)
        throughput[f"torchscript_{device.type}_batch_{b}"] = {
            "seconds": seconds,
            "images_per_s": b / seconds,
        }
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    for b in batches:
        feeds = {"z": z[:b].numpy(), "labels": labels[:b].numpy()}
        seconds = _timed(functools.partial(session.run, None, feeds), _no_sync, repeats)
        throughput[f"onnxruntime_cpu_batch_{b}"] = {"seconds": seconds, "images_per_s": b / seconds}
    checks["throughput"] = throughput
    checks["onnx_bytes"] = onnx_bytes
    return checks


def cuda_provider_check(
    onnx_bytes: bytes, cfg: Any, batches: Sequence[int], repeats: int
) -> dict[str, Any]:
    """The serving engine's CUDA execution provider path, or why it cannot run here."""
    import numpy as np
    import onnxruntime as ort

    from models.contract import labels_for_request, latent_for_seed
    from serving.core.onnx_backend import OnnxBackend, cuda_problem

    result: dict[str, Any] = {
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
    }
    problem = cuda_problem()
    if problem is not None:
        result["ran"] = False
        result["why_not"] = (
            f"{problem}: the CUDA execution provider needs onnxruntime-gpu (not installed here; "
            "too large to carry to this machine)"
        )
        return result
    with tempfile.TemporaryDirectory(prefix="gpu-check-ort-") as tmp:
        path = Path(tmp) / "generator.onnx"
        path.write_bytes(onnx_bytes)
        backend = OnnxBackend(path, cfg.signature, device="cuda")
        cpu = OnnxBackend(path, cfg.signature, device="cpu")
        n = max(batches)
        z = latent_for_seed(7, n, cfg.latent_dim)
        labels = labels_for_request(n, None)
        result["ran"] = True
        result["providers_used"] = backend.providers
        result["parity_vs_cpu_max_abs"] = float(
            np.abs(backend.run(z, labels) - cpu.run(z, labels)).max()
        )
        result["throughput"] = {}
        for b in batches:
            call = functools.partial(backend.run, z[:b], labels[:b])
            seconds = _timed(call, _no_sync, repeats)
            result["throughput"][f"batch_{b}"] = {"seconds": seconds, "images_per_s": b / seconds}
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run)")
    parser.add_argument("--data", default=None, help="MNIST directory (default ./data/mnist)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per training run")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a CPU dry run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON")
    parser.add_argument("--tag", default=None, help="file tag (default: the GPU's name)")
    args = parser.parse_args(argv)
    # The default recipe; --tiny shrinks data, networks and evaluation to seconds on a CPU.
    args.recipe = {"limit": 512, "g_width": 8, "d_width": 8, "batch_size": 64} if args.tiny else {}
    args.samples = 500 if args.tiny else 10_000
    args.batches = (1, 8, 64) if args.tiny else THROUGHPUT_BATCHES
    args.repeats = 2 if args.tiny else 20
    if args.tiny:
        args.epochs = min(args.epochs, 2)
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    missing = missing_packages()
    if missing:
        print(
            f"error: missing packages (bring them as wheels): {' '.join(missing)}", file=sys.stderr
        )
        sys.exit(2)
    import torch

    from pipeline.data.loading import load_dataset
    from pipeline.evaluation.classifier import ClassifierRecipe, get_classifier
    from pipeline.evaluation.metrics import evaluate_generator, gate_failures, real_reference
    from pipeline.machine import describe
    from pipeline.train_config import TrainConfig

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU visible (use --device cpu --tiny for a dry run)", file=sys.stderr)
        sys.exit(2)
    started = time.perf_counter()
    dataset = load_dataset("mnist", args.data)
    recipe = ClassifierRecipe(epochs=1, train_limit=2000) if args.tiny else ClassifierRecipe()
    with tempfile.TemporaryDirectory(prefix="gpu-check-cache-") as cache:
        t = time.perf_counter()
        classifier = get_classifier(dataset, device, recipe, cache_dir=Path(cache))
        classifier_seconds = time.perf_counter() - t
    reference = real_reference(classifier.model, dataset, device)

    gan_cfg = TrainConfig(**args.recipe).gan_config()

    def judge(generator: torch.nn.Module) -> dict[str, Any]:
        report = evaluate_generator(
            generator, gan_cfg, dataset, classifier, reference, device,
            num_samples=args.samples, tstr_count=0, independent=False,
        )  # fmt: skip
        return {"accuracy": report.accuracy, "fd": report.fd, "gate": not gate_failures(report)}

    results: dict[str, Any] = {
        "machine": describe(),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "targets": TARGETS,
        "classifier": {"seconds": classifier_seconds, "test_accuracy": classifier.test_accuracy,
                       "precision": classifier.precision},
    }  # fmt: skip
    runs: dict[str, dict[str, Any]] = {}
    runs["eager"], generator = train_and_gate(args, device, dataset, False, judge)
    if not args.no_compile:
        runs["compiled"], _ = train_and_gate(args, device, dataset, True, judge)
    results["training"] = runs
    results["targets_met"] = {
        name: {
            "epoch_seconds": run["best_epoch_seconds"] <= TARGETS["epoch_seconds"],
            "gate_train_seconds": run["gate"] is not None
            and run["gate"]["train_seconds"] <= TARGETS["gate_train_seconds"],
        }
        for name, run in runs.items()
    }

    # Inference checks on the eager run's trained generator.
    ts = torchscript_checks(generator, gan_cfg, device, args.batches, args.repeats)
    onnx_bytes = ts.pop("onnx_bytes")
    results["torchscript"] = ts
    results["onnxruntime_cuda"] = cuda_provider_check(
        onnx_bytes, gan_cfg, args.batches, args.repeats
    )
    results["total_seconds"] = time.perf_counter() - started

    machine = results["machine"]
    tag = args.tag or (machine.get("gpu") or "cpu").replace(" ", "-").lower()
    args.out.mkdir(parents=True, exist_ok=True)
    path: Path = args.out / f"gpu_check-{tag}-{machine['date'][:10]}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"written {path} in {results['total_seconds']:.0f} s")
    return path


if __name__ == "__main__":
    main()
