"""The seed -> latent and pixel contracts every backend relies on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.contract import (
    MAX_SEED,
    candidate_latent,
    grid_labels,
    labels_for_request,
    latent_for_seed,
    to_uint8,
)


def test_latent_is_deterministic_and_prefix_stable() -> None:
    big = latent_for_seed(7, 64, 100)
    assert big.dtype == np.float32 and big.shape == (64, 100)
    np.testing.assert_array_equal(latent_for_seed(7, 64, 100), big)
    np.testing.assert_array_equal(latent_for_seed(7, 5, 100), big[:5])
    assert not np.array_equal(latent_for_seed(8, 5, 100), big[:5])


def test_latent_matches_the_documented_formula() -> None:
    expected = np.random.Generator(np.random.PCG64(123)).standard_normal((3, 10), dtype=np.float32)
    np.testing.assert_array_equal(latent_for_seed(123, 3, 10), expected)


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
def test_latent_rejects_seeds_out_of_range(seed: int) -> None:
    with pytest.raises(ValueError, match="seed"):
        latent_for_seed(seed, 1, 10)


@given(
    seed=st.integers(0, MAX_SEED),
    k=st.integers(0, 1000),
    n=st.integers(0, 40),
    m=st.integers(0, 40),
)
def test_candidates_are_prefix_stable_and_candidate_0_is_the_seed_latent(
    seed: int, k: int, n: int, m: int
) -> None:
    small, big = sorted((n, m))
    first = candidate_latent(seed, k, big, 8)
    assert first.dtype == np.float32 and first.shape == (big, 8)
    np.testing.assert_array_equal(candidate_latent(seed, k, small, 8), first[:small])
    if k == 0:
        np.testing.assert_array_equal(first, latent_for_seed(seed, big, 8))
    elif big:  # another candidate is another draw (for the same seed, and for the next one)
        assert not np.array_equal(first, candidate_latent(seed, 0, big, 8))
        assert not np.array_equal(first, candidate_latent(seed, k + 1, big, 8))


def test_candidates_reject_bad_seeds_and_indices() -> None:
    for seed, k in ((-1, 1), (MAX_SEED + 1, 1), (0, -1)):
        with pytest.raises(ValueError, match="seed"):
            candidate_latent(seed, k, 1, 10)


def test_labels_forms() -> None:
    np.testing.assert_array_equal(
        labels_for_request(12, None), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    )
    np.testing.assert_array_equal(labels_for_request(3, 4), [4, 4, 4])
    np.testing.assert_array_equal(labels_for_request(3, [1, 2, 3]), [1, 2, 3])
    assert labels_for_request(3, 4).dtype == np.int64
    np.testing.assert_array_equal(labels_for_request(5, [1, 2]), [1, 2, 1, 2, 1])  # repeated
    np.testing.assert_array_equal(labels_for_request(2, [7, 8, 9]), [7, 8])  # a prefix
    with pytest.raises(ValueError, match="empty list"):
        labels_for_request(3, [])
    with pytest.raises(ValueError, match=r"0\.\.9"):
        labels_for_request(2, [1, 2, 10])  # judged whole, not just the part that is used
    with pytest.raises(ValueError, match=r"0\.\.9"):
        labels_for_request(2, -1)


def test_to_uint8_rounds_and_clips() -> None:
    x = np.array([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 128, 255, 255, 255])
    assert to_uint8(np.array([-0.0039], np.float32))[0] == 127  # (1 - 0.0039) * 127.5 = 127.0


def test_grid_labels_one_row_per_digit() -> None:
    labels = grid_labels()
    assert labels.shape == (100,)
    np.testing.assert_array_equal(
        labels.reshape(10, 10), np.repeat(np.arange(10)[:, None], 10, axis=1)
    )
