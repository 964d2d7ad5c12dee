"""Input validation shared by every module: clear ValueErrors naming the argument."""

import numpy as np
import pytest

from ot_coupling import tv_distance, validate_distribution, validate_k, validate_pair
from ot_coupling.validation import sample_categorical


def test_valid_distribution_is_float64_and_renormalised():
    x = validate_distribution([0.5, 0.3, 0.2 + 5e-10], "p")
    assert x.dtype == np.float64
    assert abs(x.sum() - 1.0) < 1e-15


@pytest.mark.parametrize(
    "x, match",
    [
        ([0.5, np.nan, 0.5], "p contains NaN"),
        ([0.5, np.inf, 0.5], "p contains inf"),
        ([1.2, -0.2], "p has negative mass"),
        ([0.5, 0.4], "p must sum to 1"),
        ([[0.5, 0.5]], "p must be one-dimensional"),
        ([], "p must not be empty"),
        (["a", "b"], "p must be a numeric vector"),
    ],
)
def test_bad_distributions_name_the_argument(x, match):
    with pytest.raises(ValueError, match=match):
        validate_distribution(x, "p")


def test_sum_tolerance_is_1e_9():
    validate_distribution([0.5, 0.5 + 9e-10], "q")
    with pytest.raises(ValueError, match="q must sum to 1"):
        validate_distribution([0.5, 0.5 + 2e-9], "q")


def test_pair_shape_mismatch():
    with pytest.raises(ValueError, match="same length"):
        validate_pair([0.5, 0.5], [1 / 3] * 3)


@pytest.mark.parametrize("k", [0, -1, 1.5, "2", True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        validate_k(k)


def test_k_accepts_integral_values():
    assert validate_k(np.int64(3)) == 3
    assert validate_k(2.0) == 2


def test_tv_distance_closed_form_and_zeros():
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.0, 0.5, 0.5])
    assert tv_distance(p, q) == pytest.approx(0.5, abs=1e-15)
    assert tv_distance(p, p) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(7))
        assert tv_distance(a, b) == pytest.approx(1 - np.minimum(a, b).sum(), abs=1e-14)


def test_sample_categorical_never_returns_zero_weight():
    rng = np.random.default_rng(1)
    w = np.array([0.0, 0.3, 0.0, 0.7, 0.0])
    draws = {sample_categorical(w, rng) for _ in range(2000)}
    assert draws == {1, 3}
    with pytest.raises(ValueError):
        sample_categorical(np.zeros(3), rng)
