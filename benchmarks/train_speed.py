"""Training speed: our trainer vs the classic-style reference loop, in one run on one machine.

For each loop: train epoch by epoch on the full MNIST training set with the default recipe; after
every epoch, measure the quality gate (conditional accuracy and Frechet distance, off the clock);
record seconds per epoch, images per second, and the training time until the gate first passes.
Our trainer's last checkpoint is kept (``--keep``) as the default recipe's full run.

    python -m benchmarks.train_speed --epochs 10 --ref-epochs 6
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.machine import describe, fp32_peak_gflops
from benchmarks.reference_loop import ReferenceLoop
from pipeline.data.loading import ImageDataset, load_dataset
from pipeline.evaluation.classifier import get_classifier
from pipeline.evaluation.metrics import (
    evaluate_generator,
    gate_failures,
    gate_thresholds,
    real_reference,
)
from pipeline.train import GANTrainer, resolve_device, to_device_images
from pipeline.train_config import TrainConfig

RESULTS = Path(__file__).parent / "results"


def race(
    name: str,
    train_one_epoch: Callable[[], int],
    generator: torch.nn.Module,
    cfg: TrainConfig,
    dataset: ImageDataset,
    judge: Callable[[torch.nn.Module], dict[str, Any]],
    epochs: int,
    stop_at_gate: bool,
) -> dict[str, Any]:
    """Train ``epochs`` epochs, judging the gate after each, off the clock."""
    rows, clock, gate = [], 0.0, None
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        images = train_one_epoch()
        seconds = time.perf_counter() - started
        clock += seconds
        verdict = judge(generator)
        rows.append(
            {"epoch": epoch, "seconds": seconds, "images_per_s": images / seconds, **verdict}
        )
        print(
            f"{name} epoch {epoch}: {seconds:.1f}s {images / seconds:.0f} img/s {verdict}",
            flush=True,
        )
        if gate is None and verdict["gate"]:
            gate = {"epoch": epoch, "train_seconds": clock}
            if stop_at_gate:
                break
    return {
        "epochs": rows,
        "median_epoch_seconds": statistics.median(r["seconds"] for r in rows),
        "median_images_per_s": statistics.median(r["images_per_s"] for r in rows),
        "gate": gate,
        "recipe": cfg.model_dump(),
    }


def flops_per_image(trainer: GANTrainer, images: np.ndarray, labels: np.ndarray) -> float:
    """FLOPs of one training step (D and G, forward and backward) per image, counted by torch's
    FlopCounterMode on one batch (convolutions and matmuls: nearly all of the work). The step's
    weight update is undone, so counting leaves the run untouched."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = min(trainer.cfg.batch_size, len(labels))
    state = copy.deepcopy(trainer.state_dict())
    x = to_device_images(images[:batch], trainer.device)
    y = torch.from_numpy(labels[:batch].astype(np.int64)).to(trainer.device)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer._train_step(x.contiguous(memory_format=torch.channels_last), y, update_g=True)
    trainer.load_state_dict(state)
    return float(counter.get_total_flops()) / batch


def trainer_epoch(trainer: GANTrainer, images: np.ndarray, labels: np.ndarray) -> int:
    """Train ``trainer`` one more epoch; returns the images it trained on."""
    trainer.cfg = trainer.cfg.model_copy(update={"epochs": trainer.epoch + 1})
    trainer.fit(images, labels, progress=False)
    batch = min(trainer.cfg.batch_size, len(labels))
    return (len(labels) // batch) * batch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs of our trainer")
    parser.add_argument("--ref-epochs", type=int, default=6, help="most epochs of the reference")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-fd", type=float, default=None, help="default: relative (gate)")
    parser.add_argument("--min-accuracy", type=float, default=None, help="default: relative")
    parser.add_argument("--keep", type=Path, default=Path("runs/full-default"), help="our run dir")
    parser.add_argument("--tag", default=None, help="results file tag (default: cpu or gpu)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    dataset = load_dataset("mnist")
    classifier = get_classifier(dataset, device)
    reference = real_reference(classifier.model, dataset, device)
    min_accuracy, max_fd = gate_thresholds(
        classifier.test_accuracy, reference.fd_noisy, args.min_accuracy, args.max_fd
    )

    def judge(generator: torch.nn.Module) -> dict[str, Any]:
        report = evaluate_generator(
            generator, cfg.gan_config(), dataset, classifier, reference, device, tstr_count=0
        )
        failures = gate_failures(report, min_accuracy, max_fd)
        return {"accuracy": report.accuracy, "fd": report.fd, "gate": not failures}

    cfg = TrainConfig(epochs=args.epochs, device=str(device))
    results: dict[str, Any] = {
        "machine": describe(),
        "gate": {"min_accuracy": min_accuracy, "max_fd": max_fd},
        "fd_floor": reference.fd_floor,
    }

    ours = GANTrainer(cfg.model_copy(update={"epochs": 0}), args.keep)
    ours.dataset_info = {"name": dataset.name, "md5": dataset.md5, "limit": None}

    def ours_epoch() -> int:
        return trainer_epoch(ours, dataset.train_images, dataset.train_labels)

    results["ours"] = race(
        "ours", ours_epoch, ours.served_generator, cfg, dataset, judge, args.epochs, False
    )
    results["ours"]["precision"] = ours.precision.to_dict()

    ref = ReferenceLoop(cfg, dataset.train_images, dataset.train_labels, device)

    def ref_epoch() -> int:
        return ref.run_epoch()

    results["reference"] = race(
        "reference", ref_epoch, ref.netG, cfg, dataset, judge, args.ref_epochs, True
    )
    per_image = flops_per_image(ours, dataset.train_images, dataset.train_labels)
    peak = fp32_peak_gflops(torch.get_num_threads()) if device.type == "cpu" else None
    results["flops_per_image"] = per_image
    results["fp32_peak"] = peak
    for loop in ("ours", "reference"):
        gflops = per_image * results[loop]["median_images_per_s"] / 1e9
        results[loop]["achieved_gflops"] = gflops
        if peak is not None:
            results[loop]["share_of_fp32_peak"] = gflops / float(peak["gflops"])
    results["speedup_images_per_s"] = (
        results["ours"]["median_images_per_s"] / results["reference"]["median_images_per_s"]
    )

    tag = args.tag or ("gpu" if device.type == "cuda" else "cpu")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"train_speed-{tag}-{results['machine']['date'][:10]}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"speedup {results['speedup_images_per_s']:.2f}x; written {path}")


if __name__ == "__main__":
    main()
