"""The methods of the balancing experiment (``METHODS``) and its setup.

A skewed training set keeps ``keep`` of the rare classes' images (default 1% of classes 0-4) and
all of the others. The project's standard classifier (``ClassifierRecipe``) is trained on one of
a few training sets, with plain or prior-adjusted cross-entropy, and its test-time logits are
optionally corrected for the training prior. Each method (``METHODS``) is such a combination:

- ``skewed``: the skewed set as it is (the floor); ``skewed+prior``: its logits corrected for the
  training prior at test time (thresholding, Buda et al. 2018; post-hoc logit adjustment);
- ``oversampled``: the skewed set with its rare images repeated up to each class's count in the
  full set; ``oversampled+prior``: the same with the prior correction (the target and training
  priors agree once every class is filled, so it matches ``oversampled`` up to rounding);
- ``augmented``: oversampling with shifts (<= 2 px) and rotations (<= 10 deg);
- ``class-weighted``: the skewed set, each class's loss weighted by 1 / its count (normalised);
- ``logit-adjusted``: the skewed set with the logit-adjusted loss (Menon et al. 2021, tau = 1);
- ``generated``: the skewed set plus digits from the running service's ``/balance``, up to each
  class's full count; ``generated-filtered``: the same with ``min_confidence`` (each digit read
  as its class by the version's classifier); ``generated+logit-adjusted``: filtered digits and
  the logit-adjusted loss (with the training set's own prior, which filling leaves almost flat);
  ``generated+la-real-prior``: filtered digits with the logit-adjusted loss against the *real*
  skewed set's prior (the combination the long-tail literature uses: the offsets say how rare
  each class truly is, not how many copies the filling added);
- ``generated-downweighted``: filtered digits, each generated row weighing
  ``GENERATED_LOSS_WEIGHT`` (0.5, fixed beforehand, never tuned on the test set) in the loss
  against 1 for a real one;
- ``generated+recipe``: what a filled dataset's card tells its user to do
  (models/datasets/recipe.py): the logit-adjusted loss against the real prior *and* generated
  rows down-weighted;
- ``generated+retrain-head``: the classifier of ``generated-filtered`` with its last layer
  trained anew on the real skewed set alone with the logit-adjusted loss (classifier re-training,
  Kang et al. 2020): the body learns shapes from the filled set, the decision from real data;
- ``full``: the whole real training set (the ceiling).

Each trained classifier is measured on the real test set (accuracy, per-class recall), for several
seeds; methods that differ only in the test-time correction share one trained classifier. The
headline is the share of the skewed-to-full accuracy gap that each method closes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.contract import NUM_CLASSES
from models.datasets.recipe import GENERATED_LOSS_WEIGHT

TrainingSet = Literal["skewed", "oversampled", "augmented", "generated", "filtered", "full"]
Loss = Literal["plain", "class-weighted", "logit-adjusted"]


@dataclass(frozen=True)
class Method:
    """What a method trains on, with which loss, and whether its logits are prior-corrected.
    ``loss_prior``: whose class frequencies a prior-adjusted loss uses, the training set's own
    or the real skewed set's (the same for methods without generated images).
    ``generated_weight``: a generated row's weight in the loss (a real row weighs 1).
    ``real_head``: the last layer retrained on the real skewed set (logit-adjusted loss)."""

    data: TrainingSet
    loss: Loss = "plain"
    prior_correction: bool = False
    loss_prior: Literal["train", "real"] = "train"
    generated_weight: float = 1.0
    real_head: bool = False


METHODS: dict[str, Method] = {
    "skewed": Method("skewed"),
    "skewed+prior": Method("skewed", prior_correction=True),
    "oversampled": Method("oversampled"),
    "oversampled+prior": Method("oversampled", prior_correction=True),
    "augmented": Method("augmented"),
    "class-weighted": Method("skewed", "class-weighted"),
    "logit-adjusted": Method("skewed", "logit-adjusted"),
    "generated": Method("generated"),
    "generated-filtered": Method("filtered"),
    "generated+logit-adjusted": Method("filtered", "logit-adjusted"),
    "generated+la-real-prior": Method("filtered", "logit-adjusted", loss_prior="real"),
    "generated-downweighted": Method("filtered", generated_weight=GENERATED_LOSS_WEIGHT),
    "generated+recipe": Method(
        "filtered", "logit-adjusted", loss_prior="real", generated_weight=GENERATED_LOSS_WEIGHT
    ),
    "generated+retrain-head": Method("filtered", real_head=True),
    "full": Method("full"),
}
GENERATED: frozenset[TrainingSet] = frozenset({"generated", "filtered"})


@dataclass(frozen=True)
class BalanceSetup:
    keep: float = 0.01
    rare: tuple[int, ...] = (0, 1, 2, 3, 4)
    seeds: tuple[int, ...] = (0, 1, 2)
    classifier_epochs: int = 3  # the evaluation classifier's recipe, as the recorded results
    methods: tuple[str, ...] = tuple(METHODS)
    min_confidence: float = 0.9  # the filter of the generated-filtered methods

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")
        if not self.rare or any(not 0 <= d < NUM_CLASSES for d in self.rare):
            raise ValueError(f"rare must list digits 0..9, got {self.rare}")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")

    @property
    def needs_service(self) -> bool:
        return any(METHODS[name].data in GENERATED for name in self.methods)
