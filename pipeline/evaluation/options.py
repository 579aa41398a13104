"""How a generator is measured and judged, declared once: the quality gate's thresholds and the
sample counts that the CLI (`dcgan evaluate`, `dcgan retrain`), the flow and the evaluation
functions take as their defaults."""

from __future__ import annotations

from dataclasses import dataclass

# Gate thresholds, set from measurement. FD against the 10k test digits with the classifier of
# 2026-11-22 (5 epochs, bf16, recipe hash 964e345b5f39), on a 2-core Intel Xeon (AMX-bf16):
#   10k real train digits (the floor) 3.0 | 2k real train 6.8 | real + N(0, 0.1) pixel noise 7.7
#   real without one digit class 76 | cDCGAN after 1 epoch (acc 0.64) 303, after 2.7 epochs
#   (acc 0.93) 50 | random-init DCGAN 1475 | one image repeated 1770.
#   Full default run (benchmarks/results/train_speed-cpu-2026-11-22.json), FD per epoch:
#   298 106 36 17 14 23 12 11 10 9.9 (accuracy 0.66 ... 0.99); reference loop at epoch 5: 12.8.
# 30 is ~10x the floor: every epoch with accuracy >= 0.97 passes, with room for the
# epoch-to-epoch wobble (23 at epoch 6), while under-trained (36 at epoch 3, accuracy 0.95) and
# class-dropping (76) generators fail.
# On a 2-core AMD EPYC (AVX2, fp32), 2026-12-01: the 5-epoch classifier puts the floor at 2.95 and
# the demo recipe's generator at 179, 33, 16 after epochs 1-3 (accuracy 0.76, 0.95, 0.97); the
# 3-epoch one (now the default) puts the floor at 2.94 and that epoch-3 generator at 16.2.
MAX_FD = 30.0
# Normalised entropy of predicted classes: real test digits 0.9992; one class lost 0.954.
MIN_CLASS_ENTROPY = 0.98
# Worst class's spread / real spread: real 0.97-1.0, cDCGAN at 1-3 epochs 0.86-0.92, one image
# per class 0.0. Mean distances barely see collapse to K >> 2 modes per class; FD does.
MIN_DIVERSITY_RATIO = 0.5
MIN_ACCURACY = 0.97  # conditional accuracy: the classifier must read the digit that was asked for


@dataclass(frozen=True)
class EvalOptions:
    """One evaluation's settings; ``EvalOptions()`` is the default everything uses."""

    samples: int = 10_000  # generated digits for accuracy, FD, IS and the class statistics
    tstr_count: int = 60_000  # generated digits the train-on-synthetic classifier learns; 0 skips
    tstr_epochs: int = 3  # epochs of that classifier
    min_accuracy: float = MIN_ACCURACY
    max_fd: float = MAX_FD


EVAL = EvalOptions()
