"""solvers.pareto_front: the LP front equals Yin et al.'s Theorem 5 line r + loss = TV."""

import numpy as np
import pytest
from oracles import random_cases

from markov import tradeoff as tr
from solvers import pareto_front


@pytest.mark.parametrize("case", random_cases(5, 12, v_range=(2, 8)))
def test_front_is_the_line(case):
    p, q = case
    front = pareto_front(p, q, n_points=7)
    assert front.success and front.status == 0 and all(s == "optimal" for s in front.point_status)
    assert front.line_gap() < 1e-8
    for r, loss, b, P in zip(front.rejection, front.loss, front.acceptance, front.resampling):
        # the returned rule realises the point: its rejection and loss (Thm 4 with its own P)
        assert tr.rejection_probability(p, q, b) == pytest.approx(r, abs=1e-8)
        assert tr.quality_loss(p, q, b, P) == pytest.approx(loss, abs=1e-8)
        assert tr.optimal_loss(p, q, b) <= loss + 1e-8


def test_levels_beyond_tv_and_equal_laws():
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
    front = pareto_front(p, q, rejections=[0.0, front_tv(p, q), 0.95, 1.0])
    assert np.allclose(front.loss, np.maximum(front.tv - front.rejection, 0), atol=1e-9)
    same = pareto_front(p, p, n_points=3)
    assert same.tv == 0 and np.allclose(same.loss, 0)


def front_tv(p, q):
    return float(np.maximum(p - q, 0).sum())


def test_bad_input():
    with pytest.raises(ValueError, match="q"):
        pareto_front([0.5, 0.5], [0.5, 0.6])
    with pytest.raises(ValueError, match="rejections"):
        pareto_front([0.5, 0.5], [0.2, 0.8], rejections=[1.5])
    with pytest.raises(ValueError, match="n_points"):
        pareto_front([0.5, 0.5], [0.2, 0.8], n_points=0)
