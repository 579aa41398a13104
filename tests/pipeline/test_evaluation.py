"""Evaluation metrics on real MNIST: each metric must separate real digits from bad generators.

Small on purpose (a 6,000-digit classifier, a few thousand samples): the whole file runs in about
a minute on 2 CPU cores. The full recipe's numbers are measured outside the test suite.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.classifier import DigitClassifier
from models.netconfig import GANConfig
from models.networks import build_generator
from pipeline.data.loading import ImageDataset, load_dataset
from pipeline.evaluation import classifier as clf_mod
from pipeline.evaluation import metrics as metrics_mod
from pipeline.evaluation import stats
from pipeline.evaluation.classifier import (
    ClassifierRecipe,
    EvaluationClassifier,
    cache_path,
    get_classifier,
    predict,
    to_input,
)
from pipeline.evaluation.independent import METHOD, independent_score
from pipeline.evaluation.metrics import (
    GeneratorReport,
    RealReference,
    cached_real_reference,
    evaluate_generator,
    gate_failures,
    gate_thresholds,
    real_reference,
    reference_cache_path,
    served_images,
    train_on_synthetic,
)
from pipeline.evaluation.options import MAX_ACCURACY_DROP, MAX_FD_SHARE
from tests.pipeline.conftest import SMALL_RECIPE

TINY_RECIPE = ClassifierRecipe(epochs=2, train_limit=1000, batch_size=64)
N = 2000  # generated samples per metric


def passes_gate(report: GeneratorReport, **thresholds: float) -> bool:
    """True when ``gate_failures`` (same keyword thresholds) finds nothing."""
    return not gate_failures(report, **thresholds)


# --- fake generators ------------------------------------------------------------------------


class ReplayGenerator(nn.Module):
    """Returns real training digits of the requested class, picked by z: a near-perfect "GAN"."""

    table: torch.Tensor

    def __init__(self, dataset: ImageDataset, per_class: int) -> None:
        super().__init__()
        table = np.stack(
            [dataset.train_images[dataset.train_labels == c][:per_class] for c in range(10)]
        )  # (10, per_class, 28, 28)
        self.register_buffer("table", torch.from_numpy(table).float() / 127.5 - 1.0)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        assert labels is not None
        pick = (z[:, 0].abs() * 1e4).long() % self.table.shape[1]
        return self.table[labels, pick][:, None]  # (B, 1, 28, 28)


def replay(dataset: ImageDataset, per_class: int) -> tuple[ReplayGenerator, GANConfig]:
    return ReplayGenerator(dataset, per_class), GANConfig(conditional=True)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference(classifier: EvaluationClassifier, mnist: ImageDataset) -> RealReference:
    return real_reference(classifier[0], mnist, floor_samples=N)


@pytest.fixture(scope="session")
def random_report(
    mnist: ImageDataset, classifier: EvaluationClassifier, reference: RealReference
) -> GeneratorReport:
    torch.manual_seed(0)
    cfg = GANConfig()
    return evaluate_generator(
        build_generator(cfg), cfg, mnist, classifier, reference, num_samples=N, tstr_count=0
    )


@pytest.fixture(scope="session")
def replay_report(
    mnist: ImageDataset, classifier: EvaluationClassifier, reference: RealReference
) -> GeneratorReport:
    gen, cfg = replay(mnist, per_class=500)
    return evaluate_generator(gen, cfg, mnist, classifier, reference, num_samples=N, tstr_count=0)


# --- statistics -----------------------------------------------------------------------------


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert stats.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    # Rotating both Gaussians the same way must not change their distance.
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    rotated = stats.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(expected)
    assert stats.frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_for_non_commuting_covariances() -> None:
    # Independent route: the eigenvalues of S1 S2 are real and >= 0, tr sqrt(S1 S2) = sum sqrt.
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=(2, 6, 6))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(6), m2 @ m2.T
    mu1, mu2 = rng.normal(size=(2, 6))
    tr_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert stats.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    feats = rng.normal(size=(500, 6))
    assert stats.fd_between(feats, feats) == pytest.approx(0, abs=1e-9)


def test_inception_score_and_entropy_bounds() -> None:
    confident_even = np.eye(10)[np.arange(1000) % 10] * 50.0
    assert stats.inception_score(confident_even) == pytest.approx(10.0, rel=1e-6)
    assert stats.inception_score(np.zeros((100, 10))) == pytest.approx(1.0)
    even = stats.class_histogram(np.arange(100) % 10, 10)
    assert stats.normalized_entropy(even) == pytest.approx(1.0)
    assert stats.normalized_entropy(stats.class_histogram(np.zeros(100, int), 10)) == 0.0


# --- classifier -----------------------------------------------------------------------------


def test_classifier_beats_chance_by_far_on_real_test(
    classifier: EvaluationClassifier, mnist: ImageDataset
) -> None:
    model, test_accuracy, _ = classifier
    assert test_accuracy > 0.93  # chance is 0.10
    logits, feats = predict(model, mnist.test_images[:500])
    assert logits.shape == (500, 10) and feats.shape == (500, 128)
    assert (logits.argmax(1) == mnist.test_labels[:500]).mean() > 0.9


def test_classifier_cache_is_reused(
    mnist: ImageDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, acc, _ = get_classifier(mnist, recipe=TINY_RECIPE, cache_dir=tmp_path)
    path = cache_path(mnist, TINY_RECIPE, tmp_path)
    assert path.name.startswith(mnist.fingerprint) and path.is_file()
    mtime = path.stat().st_mtime_ns

    def no_training(*args: object, **kwargs: object) -> DigitClassifier:
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(clf_mod, "train_classifier", no_training)
    again, acc_again, _ = get_classifier(mnist, recipe=TINY_RECIPE, cache_dir=tmp_path)
    assert acc_again == acc and path.stat().st_mtime_ns == mtime
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # A fresh and a loaded classifier measure identically (same layout, same kernels).
    images = mnist.test_images[:200]
    assert np.array_equal(predict(model, images)[1], predict(again, images)[1])
    # Another recipe is another cache entry, so it trains (and here hits the guard).
    with pytest.raises(AssertionError, match="cached classifier"):
        other = ClassifierRecipe(epochs=1, train_limit=1000)
        get_classifier(mnist, recipe=other, cache_dir=tmp_path)


def test_corrupt_classifier_cache_is_retrained(mnist: ImageDataset, tmp_path: Path) -> None:
    path = cache_path(mnist, TINY_RECIPE, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    _, acc, _ = get_classifier(mnist, recipe=TINY_RECIPE, cache_dir=tmp_path)
    assert acc > 0.5
    payload = torch.load(path, weights_only=True)
    assert payload["test_accuracy"] == acc and payload["dataset_md5"] == mnist.md5
    assert not list(path.parent.glob("*.part"))  # no temporary file left behind


def test_reference_is_cached_per_classifier_and_reloads_exactly(
    mnist: ImageDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = get_classifier(mnist, recipe=TINY_RECIPE, cache_dir=tmp_path).model
    # A tenth of the data (same fingerprint, own cache directory): the cache logic is the same.
    small = dataclasses.replace(
        mnist,
        train_images=mnist.train_images[:2000],
        train_labels=mnist.train_labels[:2000],
        test_images=mnist.test_images[:1000],
        test_labels=mnist.test_labels[:1000],
    )
    computed = cached_real_reference(model, small, cache_dir=tmp_path)  # computed, then kept
    path = reference_cache_path(model, small, cache_dir=tmp_path)
    assert path.is_file() and path.name.startswith(mnist.fingerprint)
    calls: list[str] = []

    def counted(*args: object, **kwargs: object) -> RealReference:
        calls.append("computed")
        return computed

    monkeypatch.setattr(metrics_mod, "real_reference", counted)
    loaded = cached_real_reference(model, small, cache_dir=tmp_path)
    assert not calls  # loaded, not computed
    for name in ("test_features", "test_labels", "mu", "sigma"):
        assert np.array_equal(getattr(loaded, name), getattr(computed, name)), name
    for name in ("fd_floor", "fd_noisy", "inception_score"):
        assert getattr(loaded, name) == getattr(computed, name), name
    # Other weights are another entry; a damaged entry is computed again and replaced.
    weight = next(model.parameters())
    kept = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1e-3)
    assert reference_cache_path(model, small, cache_dir=tmp_path) != path
    with torch.no_grad():
        weight.copy_(kept)
    path.write_bytes(b"not an npz file")
    cached_real_reference(model, small, cache_dir=tmp_path)
    assert calls == ["computed"]
    assert float(np.load(path)["fd_noisy"]) == computed.fd_noisy


# --- metrics of generators ------------------------------------------------------------------


def test_fd_of_real_digits_is_small_and_of_random_generator_large(
    reference: RealReference, random_report: GeneratorReport, replay_report: GeneratorReport
) -> None:
    assert replay_report.fd < 3 * reference.fd_floor + 1  # replayed real digits ~ the floor
    assert random_report.fd > 30 * replay_report.fd


def test_inception_score_real_high_random_low(
    reference: RealReference, random_report: GeneratorReport, replay_report: GeneratorReport
) -> None:
    assert reference.inception_score > 8.5
    assert replay_report.inception_score > 8.5
    assert random_report.inception_score < 3.0


def test_conditional_accuracy_and_gate(
    random_report: GeneratorReport, replay_report: GeneratorReport
) -> None:
    assert replay_report.accuracy is not None and replay_report.accuracy > 0.93
    assert replay_report.per_class_accuracy is not None
    assert min(replay_report.per_class_accuracy) > 0.8
    assert random_report.accuracy is not None and random_report.accuracy < 0.5
    # The default thresholds are relative to the classifier that judges (this one is ~97%
    # accurate, and its feature space has a scale of its own).
    assert passes_gate(replay_report), gate_failures(replay_report)
    failures = gate_failures(random_report)
    assert any("accuracy" in f for f in failures) and any("Frechet" in f for f in failures)
    assert any("entropy" in f for f in failures) and not passes_gate(random_report)


def test_gate_thresholds_are_relative_unless_given() -> None:
    relative_fd = round(MAX_FD_SHARE * 10, 3)
    assert gate_thresholds(0.92, 10.0) == (round(0.92 - MAX_ACCURACY_DROP, 4), relative_fd)
    assert gate_thresholds(0.92, 10.0, min_accuracy=0.5) == (0.5, relative_fd)
    assert gate_thresholds(0.99, 10.0, max_fd=3.0) == (round(0.99 - MAX_ACCURACY_DROP, 4), 3.0)


class ClassSwapGenerator(ReplayGenerator):
    """Replays real digits, but draws class ``wrong`` when ``dropped`` is asked for: one class is
    lost, the others stay perfect."""

    def __init__(self, dataset: ImageDataset, per_class: int, dropped: int, wrong: int) -> None:
        super().__init__(dataset, per_class)
        self.table[dropped] = self.table[wrong]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_each_dataset_is_gated_by_its_own_classifier(
    name: str,
    mnist: ImageDataset,
    classifier: EvaluationClassifier,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    dataset = mnist if name == "mnist" else load_dataset(name)
    judge = classifier  # SMALL_RECIPE on MNIST; the same recipe on the other dataset
    if name != "mnist":
        cache = tmp_path_factory.mktemp(f"gate-{name}")
        judge = get_classifier(dataset, recipe=SMALL_RECIPE, cache_dir=cache)
    ref = real_reference(judge.model, dataset, floor_samples=N)
    assert ref.fd_noisy > 3 * ref.fd_floor  # pixel noise shows far above the floor

    def report_of(generator: nn.Module) -> GeneratorReport:
        cfg = GANConfig(conditional=True)
        return evaluate_generator(generator, cfg, dataset, judge, ref, num_samples=N, tstr_count=0)

    real = report_of(ReplayGenerator(dataset, per_class=500))
    assert passes_gate(real), gate_failures(real)  # real images pass their own dataset's gate
    # A generator that loses one class fails on accuracy; one that draws noise fails on FD too.
    lossy = gate_failures(report_of(ClassSwapGenerator(dataset, 500, dropped=9, wrong=4)))
    assert any("accuracy" in f for f in lossy), lossy
    torch.manual_seed(0)
    untrained = gate_failures(report_of(build_generator(GANConfig())))
    assert any("Frechet" in f for f in untrained), untrained
    if name == "fashion-mnist":
        # Its classifier reads real test images at ~80%: the MNIST-tuned absolute gate of the
        # past (accuracy >= 0.97) failed even real images.
        assert judge.test_accuracy < 0.9
        assert any("accuracy" in f for f in gate_failures(real, min_accuracy=0.97))


def test_coverage_detects_an_unconditional_collapsed_generator(
    mnist: ImageDataset, classifier: EvaluationClassifier, reference: RealReference
) -> None:
    class Constant(nn.Module):
        """Draws the same digit whatever z: total mode collapse."""

        image: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            image = torch.from_numpy(mnist.train_images[0]).float() / 127.5 - 1
            self.register_buffer("image", image)

        def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
            assert labels is None, "an unconditional generator gets no labels"
            return self.image.expand(len(z), 1, 28, 28)

    cfg = GANConfig(conditional=False)
    report = evaluate_generator(Constant(), cfg, mnist, classifier, reference, num_samples=500)
    real_logits, _ = predict(classifier[0], mnist.test_images[:2000])
    assert stats.normalized_entropy(stats.class_histogram(real_logits.argmax(1), 10)) > 0.99
    assert report.class_entropy < 0.05 and max(report.class_histogram) > 0.95
    assert report.accuracy is None and report.tstr_accuracy is None  # no labels to check
    assert any("entropy" in f for f in gate_failures(report, max_fd=1e9))


def test_diversity_ratio_detects_collapse_within_classes(
    mnist: ImageDataset,
    classifier: EvaluationClassifier,
    reference: RealReference,
    replay_report: GeneratorReport,
) -> None:
    # One image per class: right digit every time, even class histogram, but no variety.
    gen, cfg = replay(mnist, per_class=1)
    report = evaluate_generator(gen, cfg, mnist, classifier, reference, num_samples=N, tstr_count=0)
    assert report.class_entropy > 0.95  # coverage alone is fooled
    assert report.min_diversity_ratio is not None and report.min_diversity_ratio < 0.05
    assert replay_report.min_diversity_ratio is not None
    assert replay_report.min_diversity_ratio > 0.8
    assert any("diversity" in f for f in gate_failures(report, max_fd=1e9))


def test_train_on_synthetic_runs_end_to_end(mnist: ImageDataset) -> None:
    varied, cfg = replay(mnist, per_class=300)
    monotonous, _ = replay(mnist, per_class=1)
    good = train_on_synthetic(varied, cfg, mnist, count=2000, epochs=2)
    bad = train_on_synthetic(monotonous, cfg, mnist, count=2000, epochs=2)
    assert good > 0.85 and good > bad + 0.15


def test_report_is_reproducible_and_json_ready(
    mnist: ImageDataset, replay_report: GeneratorReport
) -> None:
    torch.manual_seed(0)
    gen = build_generator(GANConfig())
    first, labels = served_images(gen, GANConfig(), 50, seed=7)
    second, _ = served_images(gen, GANConfig(), 50, seed=7)
    assert first.dtype == np.uint8 and np.array_equal(first, second)
    assert labels.tolist() == [i % 10 for i in range(50)]
    data = json.loads(json.dumps(replay_report.to_dict()))
    assert GeneratorReport.from_dict(data) == replay_report


def test_uint8_and_float_inputs_are_the_same_digits(mnist: ImageDataset) -> None:
    pixels = mnist.test_images[:10]
    as_float = pixels.astype(np.float32) / 127.5 - 1.0  # the generator's scale
    assert torch.equal(to_input(pixels), to_input(as_float))
    assert to_input(pixels).shape == (10, 1, 28, 28)


def test_public_names_are_exported() -> None:
    import pipeline.evaluation as evaluation

    for name in evaluation.__all__:
        assert hasattr(evaluation, name), name


# --- the independent classifier ------------------------------------------------------------


def test_the_independent_classifier_reads_real_digits_and_refuses_wrong_labels(
    mnist: ImageDataset,
) -> None:
    """Real test digits score what the classifier scores on real test digits; the same digits
    asked for as another class score almost nothing: it is an opinion, not a constant."""
    images, labels = mnist.test_images[:2000], mnist.test_labels[:2000]
    right = independent_score(images, labels, mnist, 10)
    assert right.test_accuracy > 0.96 and abs(right.accuracy - right.test_accuracy) < 0.02
    assert min(right.per_class_accuracy) > 0.85
    wrong = independent_score(images, (labels + 1) % 10, mnist, 10)
    assert wrong.accuracy < 0.05 and wrong.test_accuracy == right.test_accuracy


def test_every_conditional_report_carries_the_second_opinion(
    random_report: GeneratorReport,
) -> None:
    second = random_report.independent
    assert second is not None and second.method == METHOD
    assert second.accuracy < 0.5  # an untrained generator's noise, as the CNN also says
    again = GeneratorReport.from_dict(json.loads(json.dumps(random_report.to_dict())))
    assert again == random_report
