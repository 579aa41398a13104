"""Training a conditional GAN on scarce or skewed data: what the discriminator sees, and how it is
kept from memorising the few real images of a rare class.

- **Class-balanced sampling**: real batches draw a class uniformly, then an image of that class
  (with replacement), and fake labels are uniform over the classes the data has. With plain
  shuffling, a class holding 0.2% of the images is 0.2% of the real batch but 10% of the fake
  one, so a conditional D learns "this label means fake" and G collapses on it (seen on a 1%-rare
  MNIST split: one image per rare class whatever the noise).
- **DiffAugment** (Zhao et al., NeurIPS 2020): the same random, differentiable translation and
  cutout applied to every image D judges, real or fake, in D's and G's steps, so D cannot tell
  the classes' few real images apart by heart and G is not taught the augmentation. Holes and
  borders are filled with the background (-1, black), as digits are drawn on black.
- **LeCam regularisation** (Tseng et al., CVPR 2021): D's outputs on real images are pulled
  toward the moving average of its outputs on fakes and vice versa, which bounds how far apart D
  can push them on a small training set.
- **Group spectral regularisation** (gSR; Rangwani et al., ECCV 2022): a long-tailed conditional
  GAN's class-specific parameters of its tail classes grow one dominant direction ("spectral
  collapse"), which goes with mode collapse in those classes. gSR reshapes each class's vector of
  class-specific parameters into a near-square matrix (the "groups") and penalises its largest
  singular value squared, weighted by the inverse of the class's effective number of images
  (Cui et al. 2019), so the rarest classes are held hardest. The paper applies it to the gains
  and biases of class-conditional batch norm; this generator conditions by a label embedding
  concatenated to the noise, so what is regularised is what that embedding adds to the first
  layer, per class (``class_term``).
- **Collapse signals**, per epoch: D(G(z)) near 0 (D rejects every fake) and classes whose
  samples vary with the noise far less than the class's real images vary (seen on a 1%-rare
  MNIST split with plain shuffling: every class at 0.3-0.45 of its real spread after epoch 1,
  one image per class whatever the noise).

Everything draws from the trainer's own ``torch.Generator``, so a run stays reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.dcgan import DCGANGenerator
from models.fc import FCGenerator
from pipeline.train_config import TrainConfig

BACKGROUND = -1.0  # pixel value of the empty background in [-1, 1]
TRANSLATION_RATIO = 0.125  # DiffAugment's defaults: shift by up to 1/8 of the side,
CUTOUT_RATIO = 0.5  # and blank a square of half the side
EFFECTIVE_NUMBER_BETA = 0.999  # gSR's beta for the effective number (1 - beta^n) / (1 - beta)
# Collapse: D's mean probability on fakes over an epoch below this, or a class's spread across
# noise (pixel std in [0, 1] over a row of samples) below this share of its real images' spread.
COLLAPSE_D_G_Z = 0.05
COLLAPSE_SPREAD_SHARE = 0.5
SPREAD_SAMPLES = 10  # images per class in a spread: a row of the sample grid
# The real reference is the mean spread of this many draws of SPREAD_SAMPLES real images: one
# draw varied up to 2x between two halves of a class (Fashion-MNIST trousers 0.088 vs 0.169),
# which flagged a varied generated class as collapsed; the mean of 100 moved under 3%.
SPREAD_REFERENCE_DRAWS = 100
# Judged from this many steps on: a generator a few steps old is flat for want of training (the
# tests' 8-step runs show 0.02 of the real spread), which is not collapse. Collapse on skewed
# data showed by epoch 1 (234 steps).
MIN_STEPS_TO_JUDGE = 200


def translate(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``TRANSLATION_RATIO`` of its side in x and y, filling with the
    background (differentiable: a gather)."""
    n, _, h, w = x.shape
    sy, sx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device, generator=rng)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device, generator=rng)
    padded = torch.nn.functional.pad(x, (sx, sx, sy, sy), value=BACKGROUND)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + sy - dy
    cols = torch.arange(w, device=x.device).view(1, 1, w) + sx - dx
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, 0, rows, cols].unsqueeze(1)


def cutout(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Blank one square of ``CUTOUT_RATIO`` of the side per image, at a random centre."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    cy = torch.randint(0, h + (1 - size_y % 2), (n, 1, 1), device=x.device, generator=rng)
    cx = torch.randint(0, w + (1 - size_x % 2), (n, 1, 1), device=x.device, generator=rng)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (
        (rows >= cy - size_y // 2)
        & (rows < cy - size_y // 2 + size_y)
        & (cols >= cx - size_x // 2)
        & (cols < cx - size_x // 2 + size_x)
    )
    return torch.where(inside.unsqueeze(1), torch.full_like(x, BACKGROUND), x)


def diff_augment(x: torch.Tensor, policy: str, rng: torch.Generator) -> torch.Tensor:
    """``policy``: none, translation or translation-cutout (the DiffAugment policies for D)."""
    if policy == "none":
        return x
    x = translate(x, rng)
    if policy == "translation-cutout":
        x = cutout(x, rng)
    return x


class ClassBalancedSampler:
    """Indices of real images with every present class equally likely (each class's images
    drawn with replacement), and fake labels uniform over the present classes."""

    def __init__(self, labels: torch.Tensor, num_classes: int) -> None:
        self.order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=num_classes)
        self.present = torch.nonzero(counts).flatten()
        self.counts = counts[self.present]
        self.starts = (torch.cumsum(counts, 0) - counts)[self.present]

    def real(self, n: int, rng: torch.Generator) -> torch.Tensor:
        classes = torch.randint(0, len(self.present), (n,), device=self.order.device, generator=rng)
        within = torch.rand(n, device=self.order.device, generator=rng) * self.counts[classes]
        return self.order[self.starts[classes] + within.long().clamp_max(self.counts[classes] - 1)]

    def fake_labels(self, n: int, rng: torch.Generator) -> torch.Tensor:
        pick = torch.randint(0, len(self.present), (n,), device=self.order.device, generator=rng)
        labels: torch.Tensor = self.present[pick]
        return labels


class LeCam:
    """R = E[relu(D(x) - ema_fake)^2] + E[relu(ema_real - D(G(z)))^2], the emas of D's mean
    logits on real and fake images (decay 0.99, as the paper)."""

    def __init__(self, device: torch.device, decay: float = 0.99) -> None:
        self.decay = decay
        self.ema_real = torch.zeros((), device=device)
        self.ema_fake = torch.zeros((), device=device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"ema_real": self.ema_real.clone(), "ema_fake": self.ema_fake.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.ema_real.copy_(state["ema_real"])
        self.ema_fake.copy_(state["ema_fake"])

    def __call__(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.ema_real.lerp_(real_logits.mean(), 1 - self.decay)
            self.ema_fake.lerp_(fake_logits.mean(), 1 - self.decay)
        return (real_logits - self.ema_fake).relu().pow(2).mean() + (
            self.ema_real - fake_logits
        ).relu().pow(2).mean()


def group_shape(size: int) -> tuple[int, int]:
    """The most nearly square (rows, cols), rows <= cols, with rows * cols == ``size``: how gSR
    groups a class's parameter vector into a matrix (256 -> 16 x 16, 50 -> 5 x 10)."""
    rows = max(r for r in range(1, math.isqrt(size) + 1) if size % r == 0)
    return rows, size // rows


def class_term(generator: nn.Module) -> torch.Tensor:
    """What the label adds to G's first layer, per class, as (classes, rows, cols) matrices.

    G concatenates a label embedding e_c to the noise, so its first layer's output is
    f([z; 0]) + t_c with t_c = W_label e_c, W_label being the first layer's weights on the label
    inputs: the class-specific part of G, the role class-conditional batch norm's gains and
    biases play in the gSR paper. The product, not the embedding alone, is regularised: the
    first layer could undo any shrinking of e_c by growing W_label. A DCGAN term (channels,
    7, 7) is a channels x positions matrix; a flat one (the fully connected G) is grouped
    near-square (``group_shape``). Computed from the weights (a small matrix product), not by
    running the layer, which took about 20 times longer on a 2-core CPU.
    """
    if not isinstance(generator, DCGANGenerator | FCGenerator) or generator.embed is None:
        raise ValueError("only a conditional generator has a class term")
    first = generator.net[0]
    table = generator.embed.weight  # (classes, embed_dim)
    latent = generator.cfg.latent_dim
    if isinstance(first, nn.ConvTranspose2d):  # weight (in, out, 7, 7); a 1x1 input, stride 1
        return torch.einsum("ce,eop->cop", table, first.weight[latent:].flatten(2))
    assert isinstance(first, nn.Linear)  # weight (out, in)
    term = table @ first.weight[:, latent:].T  # (classes, out)
    rows, cols = group_shape(term.shape[1])
    return term.reshape(-1, rows, cols)


def group_sigma(matrices: torch.Tensor) -> torch.Tensor:
    """Each class's top singular value (``matrices``: (classes, rows, cols)): gSR's spectral
    norm per class, the quantity that grows for a collapsing tail class."""
    sigma: torch.Tensor = torch.linalg.matrix_norm(matrices.float(), ord=2)
    return sigma


class GroupSpectral:
    """gSR penalty on (classes, rows, cols) class-specific matrices: the mean over the classes
    present of w_c * sigma_max(matrix_c)^2, with w_c proportional to 1 / E_c, the class's
    effective number of images, and scaled so the present classes' weights average 1 (the
    paper's normalisation). Classes without images get weight 0: they are never drawn."""

    def __init__(self, class_counts: torch.Tensor, beta: float = EFFECTIVE_NUMBER_BETA) -> None:
        counts = class_counts.double()
        effective = (1 - beta**counts) / (1 - beta)
        inverse = torch.where(counts > 0, 1 / effective.clamp_min(1e-12), 0.0)
        present = int((counts > 0).sum())
        self.weights = (inverse * present / inverse.sum()).float()
        self.present = present

    def __call__(self, matrices: torch.Tensor) -> torch.Tensor:
        sigma = group_sigma(matrices)
        penalty: torch.Tensor = (self.weights * sigma.pow(2)).sum()  # weights on the counts' device
        return penalty / self.present


@dataclass(frozen=True)
class CollapseCheck:
    """What one epoch's statistics say about collapse; empty ``signals`` means none seen."""

    signals: tuple[str, ...]

    @property
    def collapsed(self) -> bool:
        return bool(self.signals)


def spread(images: np.ndarray) -> float:
    """Mean over pixels of the std across ``images`` (N, ...), pixels scaled to [0, 1]."""
    rows = images.reshape(len(images), -1).astype(np.float64)
    return float(rows.std(axis=0).mean())


def real_class_spread(images: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """Each class's expected spread of ``SPREAD_SAMPLES`` real uint8 images: the mean over
    ``SPREAD_REFERENCE_DRAWS`` draws, the same estimator as the generated row's spread (so its
    small-sample bias cancels) without one draw's noise. Fixed draws, so the trainer's RNG is
    untouched; NaN for a class with fewer than two images."""
    rng = np.random.default_rng(0)
    out = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            out.append(float("nan"))
            continue
        size = min(SPREAD_SAMPLES, len(idx))
        draws = [rng.choice(idx, size=size, replace=False) for _ in range(SPREAD_REFERENCE_DRAWS)]
        out.append(float(np.mean([spread(images[pick] / 255.0) for pick in draws])))
    return out


# What to try against collapse on skewed or scarce data, in this order: (option, value).
_REMEDIES: tuple[tuple[str, object], ...] = (
    ("sampling", "class-balanced"),
    ("diffaugment", "translation-cutout"),
    ("lecam_weight", 0.3),
    ("gsr_weight", 0.5),
)


def collapse_advice(cfg: TrainConfig) -> str:
    """What a collapsed run could try next: the long-tail options it leaves at their defaults
    (off), with the value measured here."""
    unused = [
        f"--{option.replace('_', '-')} {value}"
        for option, value in _REMEDIES
        if getattr(cfg, option) == TrainConfig.model_fields[option].default
        and (option != "gsr_weight" or cfg.conditional)
    ]
    if unused:
        return "for skewed or scarce data try " + " ".join(unused)
    return "every long-tail option is on: train longer, or resume from an earlier checkpoint"


def collapse_signals(
    d_g_z: float, class_spread: list[float], real_spread: list[float]
) -> CollapseCheck:
    """D(G(z)) near 0, or classes whose samples vary far less than their real images."""
    signals = []
    if d_g_z < COLLAPSE_D_G_Z:
        signals.append(f"D(G(z)) = {d_g_z:.3f} < {COLLAPSE_D_G_Z}: D rejects every fake")
    flat = [
        c
        for c, (fake, real) in enumerate(zip(class_spread, real_spread, strict=False))
        if real == real and fake < COLLAPSE_SPREAD_SHARE * real  # NaN: too few real images
    ]
    if flat:
        signals.append(
            f"class(es) {', '.join(map(str, flat))} barely vary with the noise (spread below "
            f"{COLLAPSE_SPREAD_SHARE:g} x their real images'): one image per class"
        )
    return CollapseCheck(tuple(signals))
