"""Training on skewed data (pipeline.longtail): class-balanced sampling, DiffAugment, LeCam, group
spectral regularisation and the collapse signals, on real MNIST subsets and generated inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.netconfig import GANConfig
from models.networks import build_generator
from pipeline.data.loading import ImageDataset
from pipeline.evaluation.promotion import collapse_reason
from pipeline.longtail import (
    BACKGROUND,
    ClassBalancedSampler,
    GroupSpectral,
    LeCam,
    class_term,
    collapse_advice,
    collapse_signals,
    cutout,
    group_shape,
    real_class_spread,
    translate,
)
from pipeline.train import train
from pipeline.train_config import TrainConfig
from tests.pipeline.test_train import assert_same_weights

LONGTAIL = {
    "sampling": "class-balanced",
    "diffaugment": "translation-cutout",
    "lecam_weight": 0.3,
    "gsr_weight": 0.5,
}
SMALL = {"limit": 512, "batch_size": 64, "g_width": 8, "d_width": 8, "check_every": 4}


def _images(seed: int, n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.full_like(x, BACKGROUND)
    h, w = x.shape[-2:]
    ys, yd = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
    xs, xd = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_translation_is_a_shift_of_at_most_an_eighth_filled_with_background(seed: int) -> None:
    x = _images(seed)
    y = translate(x, torch.Generator().manual_seed(seed))
    for image, moved in zip(x, y, strict=True):
        shifts = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if torch.equal(_shifted(image, dy, dx), moved)
        ]
        assert shifts, "not a shift of up to 4 pixels with the background filled in"


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_cutout_blanks_one_square_of_at_most_half_the_side(seed: int) -> None:
    x = _images(seed)
    y = cutout(x, torch.Generator().manual_seed(seed))
    changed = y != x
    assert torch.all(y[changed] == BACKGROUND)
    for mask in changed[:, 0]:
        rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
        if len(rows):  # a square (clipped at the border): every pixel of its bounding box
            assert len(rows) <= 14 and len(cols) <= 14
            assert mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()


def test_augmentations_pass_gradients() -> None:
    x = _images(0).requires_grad_()
    rng = torch.Generator().manual_seed(0)
    cutout(translate(x, rng), rng).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=10, max_size=10).filter(lambda c: sum(c) > 0))
def test_class_balanced_sampling_is_uniform_over_the_classes_present(counts: list[int]) -> None:
    labels = torch.tensor(np.repeat(np.arange(10), counts))
    sampler = ClassBalancedSampler(labels, 10)
    rng = torch.Generator().manual_seed(0)
    present = [c for c in range(10) if counts[c]]
    for drawn in (labels[sampler.real(20_000, rng)], sampler.fake_labels(20_000, rng)):
        share = torch.bincount(drawn, minlength=10).double() / len(drawn)
        assert all(share[c] == 0 for c in range(10) if not counts[c])
        assert all(abs(share[c] - 1 / len(present)) < 0.03 for c in present)


def test_lecam_penalises_only_what_crosses_the_other_side_s_average() -> None:
    lecam = LeCam(torch.device("cpu"), decay=0.0)  # the averages are this batch's means
    inside = lecam(torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]))
    assert float(inside) == 0.0  # real below the fake average, fake above the real average
    apart = lecam(torch.tensor([3.0, 3.0]), torch.tensor([-3.0, -3.0]))
    assert float(apart) == pytest.approx(36.0 + 36.0)


def test_collapse_signals_name_what_they_saw() -> None:
    real = [0.13, 0.08, 0.16, 0.17, 0.13, 0.15, 0.13, 0.13, 0.14, 0.12]  # MNIST's, measured
    healthy = collapse_signals(0.3, [0.9 * r for r in real], real)
    assert not healthy.collapsed
    rejected = collapse_signals(0.01, real, real)
    assert rejected.collapsed and "D(G(z))" in rejected.signals[0]
    flat = [0.4 * r if c in (0, 3) else r for c, r in enumerate(real)]
    seen = collapse_signals(0.3, flat, real)
    assert seen.collapsed and "class(es) 0, 3 " in seen.signals[0]
    everything = collapse_signals(0.17, [0.4 * r for r in real], real)  # every class at once
    assert everything.collapsed
    too_few = collapse_signals(0.3, [0.0] * 10, [float("nan")] * 10)  # no real spread to judge
    assert not too_few.collapsed
    history = [{"epoch": 1, "collapse_signals": []}, {"epoch": 2, "collapse_signals": ["x"]}]
    assert collapse_reason(history) == "training collapsed in epoch 2: x"
    assert collapse_reason(history[:1]) is None and collapse_reason([]) is None


def test_collapse_advice_names_only_the_options_a_run_does_not_use() -> None:
    flags = ("--sampling", "--diffaugment", "--lecam-weight 0.3", "--gsr-weight 0.5")
    assert all(flag in collapse_advice(TrainConfig()) for flag in flags)
    half = collapse_advice(TrainConfig(sampling="class-balanced", diffaugment="translation-cutout"))
    assert "--sampling" not in half and "--diffaugment" not in half
    assert "--lecam-weight 0.3" in half and "--gsr-weight 0.5" in half
    assert "--gsr-weight" not in collapse_advice(TrainConfig(conditional=False))  # gSR needs labels
    assert "--lecam-weight" not in collapse_advice(TrainConfig(lecam_weight=0.1))  # on, at 0.1
    assert collapse_advice(TrainConfig(**LONGTAIL)).startswith("every long-tail option is on")


def test_real_spread_is_the_same_for_two_halves_of_each_class(mnist: ImageDataset) -> None:
    """The collapse reference must be a property of the class, not of one draw: one draw of 10
    differed up to 2x between halves and flagged a varied class as collapsed."""
    labels = mnist.train_labels
    halves = np.random.default_rng(7).permutation(len(labels)).reshape(2, -1)
    first, second = (
        real_class_spread(mnist.train_images[h], labels[h], num_classes=10) for h in halves
    )
    assert np.allclose(first, second, rtol=0.05), (first, second)
    identical = np.repeat(mnist.train_images[:1], 20, axis=0)
    assert real_class_spread(identical, np.zeros(20, np.int64), num_classes=2)[0] < 1e-12
    assert math.isnan(real_class_spread(identical, np.zeros(20, np.int64), num_classes=2)[1])


def test_long_tail_options_train_reproducibly_and_resume_exactly(
    mnist: ImageDataset, tmp_path: Path
) -> None:
    cfg = TrainConfig(**{**SMALL, **LONGTAIL, "epochs": 2})  # type: ignore[arg-type]
    a = train(cfg, mnist, tmp_path / "a", progress=False)
    b = train(cfg, mnist, tmp_path / "b", progress=False)
    assert_same_weights(a.generator.state_dict(), b.generator.state_dict())
    assert all("class_spread" in r and "collapse_signals" in r for r in a.history)
    assert all(len(r["class_sigma"]) == 10 for r in a.history)
    train(cfg.model_copy(update={"epochs": 1}), mnist, tmp_path / "c", progress=False)
    resumed = train(cfg, mnist, tmp_path / "c", resume=tmp_path / "c", progress=False)
    assert_same_weights(a.generator.state_dict(), resumed.generator.state_dict())
    plain = train(
        cfg.model_copy(
            update={
                "sampling": "shuffle",
                "diffaugment": "none",
                "lecam_weight": 0.0,
                "gsr_weight": 0.0,
            }
        ),
        mnist,
        tmp_path / "plain",
        progress=False,
    )
    assert not torch.equal(
        plain.generator.state_dict()["net.0.weight"], a.generator.state_dict()["net.0.weight"]
    )


@given(st.integers(1, 4096))
def test_gsr_groups_a_vector_into_the_most_nearly_square_matrix(size: int) -> None:
    rows, cols = group_shape(size)
    assert rows * cols == size and rows <= cols
    assert not any(size % r == 0 for r in range(rows + 1, math.isqrt(size) + 1))


def test_gsr_is_the_weighted_mean_of_each_class_s_squared_top_singular_value() -> None:
    matrices = torch.randn(4, 8, 5, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([np.linalg.svd(m.numpy(), compute_uv=False)[0] for m in matrices])
    equal = GroupSpectral(torch.tensor([100, 100, 100, 100]))
    assert torch.allclose(equal.weights, torch.ones(4))
    assert torch.allclose(equal(matrices), sigma.pow(2).mean(), rtol=1e-5)
    skewed = GroupSpectral(torch.tensor([10, 5000, 0, 5000]))
    rare, common, absent, _ = skewed.weights.tolist()
    assert absent == 0 and rare > 10 * common  # effective numbers ~10 and ~993
    assert skewed.weights.sum().item() == pytest.approx(3)  # the present classes average 1
    expected = (skewed.weights * sigma.pow(2)).sum() / 3
    assert torch.allclose(skewed(matrices), expected, rtol=1e-5)


def test_gsr_pulls_the_rare_class_s_term_in_hardest() -> None:
    matrices = torch.ones(
        2, 4, 4, requires_grad=True
    )  # the same term for a rare and a common class
    GroupSpectral(torch.tensor([20, 6000]))(matrices).backward()
    assert matrices.grad is not None
    rare, common = matrices.grad.flatten(1).norm(dim=1).tolist()
    assert rare > 10 * common > 0


@pytest.mark.parametrize("arch", ["dcgan", "fc"])
def test_class_term_is_what_the_label_adds_to_the_first_layer(arch: str) -> None:
    torch.manual_seed(0)
    cfg = GANConfig(arch=arch, g_width=8)  # type: ignore[arg-type]
    generator = build_generator(cfg).eval()
    seen: list[torch.Tensor] = []
    generator.net[0].register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    z = torch.randn(1, cfg.latent_dim).expand(10, -1)
    generator(z, torch.arange(10))
    terms = class_term(generator).detach()
    assert terms.shape[0] == 10 and terms.dim() == 3
    # The same noise under two labels differs in the first layer by the two classes' terms.
    difference = (seen[0][3] - seen[0][7]).reshape(terms.shape[1:])
    assert torch.allclose(difference, terms[3] - terms[7], atol=1e-5)
    assert not torch.allclose(terms[3], terms[7])


def test_gsr_needs_a_conditional_model() -> None:
    with pytest.raises(ValidationError, match="conditional"):
        TrainConfig(gsr_weight=0.5, conditional=False)
