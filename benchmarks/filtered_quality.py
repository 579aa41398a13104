"""Classifier-filtered answers, judged: what ``min_confidence`` buys, by two classifiers.

A running service is asked for the same balanced batch (``/balance``, ``per-class`` images of
every class, one seed) at each filter threshold, 0 being the unfiltered answer. Each batch is
judged like ``dcgan evaluate`` judges a generator:

- the project's evaluation classifier (conditional accuracy, worst class, Frechet distance to the
  real test images, worst within-class diversity). The service filters with this same classifier
  (the version's ``classifier.onnx``), so its accuracy on a filtered batch is high by construction;
- the independent classifier (``pipeline.evaluation.independent``: PCA + nearest neighbours, no
  shared code or weights), the figure that says whether the filter keeps better images or only
  images our own classifier likes;
- optionally train-on-synthetic (``--tstr-count``): a fresh classifier trained on a filtered batch
  drawn with another seed, scored on the real test images.

    dcgan serve &
    python -m benchmarks.filtered_quality --url http://127.0.0.1:8000 --thresholds 0,0.5,0.9,0.99
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from benchmarks.machine import describe
from models.fileio import write_atomic
from pipeline.data.loading import ImageDataset, load_dataset
from pipeline.evaluation import independent, stats
from pipeline.evaluation.classifier import EvaluationClassifier, get_classifier, predict
from pipeline.evaluation.metrics import (
    EVAL_SEED,
    RealReference,
    accuracy_trained_on,
    cached_real_reference,
    conditional_scores,
)
from pipeline.evaluation.options import EVAL
from pipeline.train import resolve_device
from serving.core.errors import ServiceError
from serving.tools.client import DigitsClient

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

RESULTS = Path(__file__).parent / "results"

# What each part learnt from, in words, written into every result: the benchmark sees only what
# the served model's evaluation names, so the statement says no more than that.
BOUNDARY_STATEMENT = (
    "the generator and the filter's classifier are the served model's, whose evaluation names the "
    "dataset {trained_on} (this project's flow trains on its training split and holds its test "
    "split out); the train-on-synthetic classifier learnt only from the service's generated "
    "images; both judges (the evaluation classifier and the independent one) learnt from "
    "{dataset}'s training split and only judge; every score is on {dataset}'s test split"
)
UNMATCHED_STATEMENT = (
    "; the served model names another dataset than the judged one, so nothing here shows it never "
    "saw these test images"
)


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_thresholds(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        fail(f"--thresholds {text!r}: write numbers in [0, 1], comma-separated")
    if not values or not all(0 <= v <= 1 for v in values):
        fail(f"--thresholds {text!r}: write numbers in [0, 1], comma-separated")
    return values


def boundary(evaluation: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The run's information boundary, from what the served model's evaluation names (its
    dataset, and the generator's own boundary where its evaluation stated one)."""
    trained_on = evaluation.get("dataset")
    trained_on = trained_on if isinstance(trained_on, str) else None
    statement = BOUNDARY_STATEMENT.format(trained_on=trained_on or "(none named)", dataset=dataset)
    matches = trained_on == dataset
    stated = evaluation.get("boundary")
    return {
        "generator_trained_on": trained_on,
        "judged_on": dataset,
        "matches": matches,
        "statement": statement if matches else statement + UNMATCHED_STATEMENT,
        "evaluation_statement": stated.get("statement") if isinstance(stated, dict) else None,
    }


def served_evaluation(url: str, model: str | None) -> dict[str, Any]:
    """The served model's evaluation (its metrics); one line and exit 2 without a service."""
    try:
        with DigitsClient(url) as client:
            info = client.model(model)
    except ServiceError as exc:
        fail(str(exc))
    metrics = info.get("metrics")
    return metrics if isinstance(metrics, dict) else {}


def ask(
    url: str, model: str | None, num_classes: int, per_class: int, seed: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, float | None, dict[str, str]]:
    """``per_class`` images of every class at ``threshold`` (0: unfiltered), and who made them."""
    with DigitsClient(url, timeout=1800) as client:
        got = client.balance(
            [0] * num_classes,
            target=per_class,
            seed=seed,
            min_confidence=threshold or None,
            model=model,
        )
    return got.images, got.labels, got.acceptance_rate, {"model": got.model, "version": got.version}


def judge(
    images: np.ndarray,
    labels: np.ndarray,
    dataset: ImageDataset,
    classifier: EvaluationClassifier,
    reference: RealReference,
    second_opinion: Pipeline,
) -> dict[str, Any]:
    """The evaluation classifier's and the independent classifier's reading of one batch."""
    logits, feats = predict(classifier.model, images)
    k = classifier.model.cfg.num_classes
    acc, per_class, ratios = conditional_scores(logits.argmax(axis=1), feats, labels, reference, k)
    second = independent.independent_score(images, labels, dataset, k, second_opinion)
    return {
        "accuracy": acc,
        "worst_class": min(per_class),
        "per_class_accuracy": per_class,
        "fd": stats.frechet_distance(*stats.gaussian_stats(feats), reference.mu, reference.sigma),
        "min_diversity_ratio": float(ratios.min()),
        "independent_accuracy": second.accuracy,
        "independent_worst_class": min(second.per_class_accuracy),
        "independent_per_class_accuracy": second.per_class_accuracy,
        "independent_test_accuracy": second.test_accuracy,
    }


def table(results: dict[str, Any]) -> str:
    independent_real = results["independent_test_accuracy"]
    lines = [
        "| min_confidence | acceptance | accuracy (ours) | worst class (ours) | FD "
        "| min diversity | accuracy (independent) | worst class (independent) | TSTR |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        rate = row["acceptance_rate"]
        tstr = row.get("tstr_accuracy")
        lines.append(
            f"| {row['min_confidence']:g} | {'-' if rate is None else f'{rate:.1%}'} "
            f"| {row['accuracy']:.2%} | {row['worst_class']:.2%} | {row['fd']:.2f} "
            f"| {row['min_diversity_ratio']:.2f} | {row['independent_accuracy']:.2%} "
            f"| {row['independent_worst_class']:.2%} | {'-' if tstr is None else f'{tstr:.2%}'} |"
        )
    lines.append(
        f"| real test images | | {results['classifier_test_accuracy']:.2%} | | "
        f"{results['fd_floor']:.2f} (floor) | | {independent_real:.2%} | | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="a running service")
    parser.add_argument("--model", default=None, help="one of its models (default: its first)")
    parser.add_argument("--dataset", default="mnist", help="the model's dataset, to judge against")
    parser.add_argument("--thresholds", default="0,0.5,0.9,0.99", type=parse_thresholds)
    parser.add_argument("--per-class", type=int, default=EVAL.samples // 10)
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument(
        "--tstr-count", type=int, default=0, help="train-on-synthetic images (0: skip)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="cpu", help="results file tag")
    args = parser.parse_args(argv)
    if args.per_class < 2 or args.tstr_count < 0:
        fail("--per-class must be at least 2 and --tstr-count at least 0")

    evaluation = served_evaluation(args.url, args.model)
    dataset = load_dataset(args.dataset)
    device = resolve_device(args.device)
    classifier = get_classifier(dataset, device)
    reference = cached_real_reference(classifier.model, dataset, device)
    results: dict[str, Any] = {
        "machine": describe(),
        "boundary": boundary(evaluation, args.dataset),
        "url": args.url,
        "dataset": args.dataset,
        "per_class": args.per_class,
        "seed": args.seed,
        "classifier_test_accuracy": classifier.test_accuracy,
        "fd_floor": reference.fd_floor,
        "rows": [],
    }
    second_opinion = independent.fit(dataset)
    num_classes = classifier.model.cfg.num_classes  # the dataset's, so the served model's too
    date = results["machine"]["date"][:10]
    path: Path = args.out / f"filtered_quality-{args.dataset}-{args.tag}-{date}.json"
    for threshold in args.thresholds:
        started = time.perf_counter()
        try:
            images, labels, rate, source = ask(
                args.url, args.model, num_classes, args.per_class, args.seed, threshold
            )
        except ServiceError as exc:  # e.g. a threshold the candidate cap cannot meet (422)
            print(f"min_confidence {threshold:g}: the service refused: {exc}", flush=True)
            results.setdefault("refused", {})[f"{threshold:g}"] = str(exc)
            write_atomic(path, json.dumps(results, indent=2).encode())  # kept, even if last
            continue
        row: dict[str, Any] = {"min_confidence": threshold, "acceptance_rate": rate, **source}
        row["generate_seconds"] = time.perf_counter() - started
        row.update(judge(images, labels, dataset, classifier, reference, second_opinion))
        results["independent_test_accuracy"] = row.pop("independent_test_accuracy")
        if args.tstr_count:
            per_class = -(-args.tstr_count // num_classes)
            tstr_images, tstr_labels, _, _ = ask(
                args.url, args.model, num_classes, per_class, args.seed + 1, threshold
            )
            row["tstr_accuracy"] = accuracy_trained_on(tstr_images, tstr_labels, dataset)
            row["tstr_count"] = len(tstr_labels)
        row["seconds"] = time.perf_counter() - started
        print(f"min_confidence {threshold:g}: {json.dumps(row)}", flush=True)
        results["rows"].append(row)
        results["table"] = table(results)  # written after every row: a stopped run keeps them
        write_atomic(path, json.dumps(results, indent=2).encode())
    if not results["rows"]:
        fail("the service refused every threshold")
    print(results["table"])
    print(f"written {path}")
    return path


if __name__ == "__main__":
    main()
