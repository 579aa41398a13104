"""The statistics behind the generator metrics, numpy only (float64), no scipy.

Every function takes classifier outputs (logits or features) as arrays, so each can be checked on
its own with real data before it judges a generator.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64."""
    f = np.asarray(features, dtype=np.float64)
    assert f.ndim == 2 and len(f) > 1, f"need (N > 1, D) features, got {f.shape}"
    sigma: np.ndarray = np.cov(f, rowvar=False)
    return f.mean(axis=0), sigma


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; tiny negative eigenvalues are noise."""
    vals, vecs = np.linalg.eigh((matrix + matrix.T) / 2)
    root: np.ndarray = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    return root


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2)) between two Gaussians.

    tr sqrt(S1 S2) is computed as tr sqrt(A S2 A) with A = sqrt(S1): the two matrices are similar,
    and A S2 A is symmetric PSD, so two ``eigh`` calls replace scipy's non-symmetric ``sqrtm``
    and never produce the complex parts that ``sqrtm`` leaks on near-singular covariances.
    """
    a = _sqrt_psd(sigma1)
    middle = a @ sigma2 @ a
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean
    return float(max(fd, 0.0))


def fd_between(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


def inception_score(logits: np.ndarray, splits: int = 1) -> float:
    """exp(E_x KL(p(y|x) || p(y))): high when each sample is confident and the classes are even.

    Bounded by the number of classes (10 for digits). With ``splits`` > 1 it is the mean over
    equal chunks, as in Salimans et al.; one split is the less noisy estimate for N >= 10k.
    """
    p = softmax(logits)
    scores = []
    for chunk in np.array_split(p, splits):
        marginal = chunk.mean(axis=0, keepdims=True)
        kl = (chunk * (np.log(chunk + 1e-12) - np.log(marginal + 1e-12))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores))


def class_histogram(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of samples predicted as each class (sums to 1)."""
    counts = np.bincount(np.asarray(predictions), minlength=num_classes).astype(np.float64)
    shares: np.ndarray = counts / max(counts.sum(), 1.0)
    return shares


def normalized_entropy(histogram: np.ndarray) -> float:
    """Entropy of a class histogram / log(classes): 1 for even coverage, 0 for one class only."""
    p = np.asarray(histogram, dtype=np.float64)
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum() / np.log(len(p))) + 0.0  # + 0.0: no -0.0 in reports


def mean_pairwise_distance(features: np.ndarray, max_items: int = 1000) -> float:
    """Mean Euclidean distance between distinct rows (the first ``max_items`` rows)."""
    f = np.asarray(features[:max_items], dtype=np.float64)
    n = len(f)
    if n < 2:
        return 0.0
    sq = (f * f).sum(axis=1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0, None)
    return float(np.sqrt(d2[np.triu_indices(n, k=1)]).mean())


def diversity_ratios(
    gen_features: np.ndarray,
    gen_labels: np.ndarray,
    real_features: np.ndarray,
    real_labels: np.ndarray,
    num_classes: int,
    max_items: int = 1000,
) -> np.ndarray:
    """Per class: mean pairwise feature distance of generated / of real digits of that class.

    About 1 when a class is as varied as the real digits; near 0 when a conditional generator
    has collapsed to a few images for that class, which class coverage alone cannot see.
    """
    ratios = np.zeros(num_classes)
    for c in range(num_classes):
        real = mean_pairwise_distance(real_features[real_labels == c], max_items)
        gen = mean_pairwise_distance(gen_features[gen_labels == c], max_items)
        ratios[c] = gen / real if real > 0 else 0.0
    return ratios


def per_class_frechet(
    features: np.ndarray,
    labels: np.ndarray,
    real_features: np.ndarray,
    real_labels: np.ndarray,
    k: int,
) -> list[float | None]:
    """Frechet distance of each class's generated features to that class's real ones (None for
    a class with fewer than two images on either side): a rare class's own quality, which the
    whole-set distance hides under the plentiful classes."""
    out: list[float | None] = []
    for c in range(k):
        fake, real = features[labels == c], real_features[real_labels == c]
        if len(fake) < 2 or len(real) < 2:
            out.append(None)
            continue
        out.append(frechet_distance(*gaussian_stats(fake), *gaussian_stats(real)))
    return out
