"""Closed forms of the optimal multi-draft acceptance against brute force over all 2^V subsets,
the worked fixtures of docs/theory/membership_ot.md#worked-examples, and structural properties."""

from itertools import combinations, pairwise

import numpy as np
import pytest
from oracles import brute_force_optimum, random_cases
from solver_laws import SET_LAWS, feasible

from ot_coupling import tv_distance
from solvers.closed_form import optimal_acceptance, optimal_cut, ratio_order

LAWS = ("iid", "without_replacement", "greedy", "hub")
CASES = random_cases(2026, 120, v_range=(2, 7)) + random_cases(7, 40, v_range=(3, 6), concentrations=(0.1,))

# docs/theory/membership_ot.md#worked-examples, example A
PA = np.array([0.5, 0.3, 0.15, 0.05])
QA = np.array([0.2, 0.2, 0.3, 0.3])


def _ks(law):
    return (2,) if law == "hub" else (1, 2, 3, 4)


@pytest.mark.parametrize("law", LAWS)
def test_closed_form_equals_brute_force_over_all_subsets(law):
    n_checked = 0
    for p, q in CASES:
        for k in _ks(law):
            if not feasible(law, q, k) or (law == "without_replacement" and p.size == 7 and k == 4):
                continue
            sets, probs = SET_LAWS[law](q, k)
            best, _ = brute_force_optimum(p, sets, probs)
            res = optimal_cut(p, q, k, law)
            assert abs(res.value - best) < 1e-10, (law, k, p, q, res, best)
            # the returned set attains the value: p(H) + 1 - Q(S subset of H) recomputed by brute force
            inside = sum(w for s, w in zip(sets, probs) if set(s.tolist()) <= set(res.cut.tolist()))
            assert abs(p[res.cut].sum() + 1.0 - inside - res.value) < 1e-10
            n_checked += 1
    assert n_checked > 150


@pytest.mark.parametrize("k, opt_wr, opt_wor", [(2, 0.840000, 0.921429), (3, 0.984000, 1.000000)])
def test_worked_example_A(k, opt_wr, opt_wor):
    wr = optimal_cut(PA, QA, k)
    assert round(wr.value, 6) == opt_wr
    assert wr.cut.tolist() == [2, 3]
    assert round(optimal_acceptance(PA, QA, k, "without_replacement"), 6) == opt_wor
    assert round(1 - tv_distance(PA, QA), 6) == 0.6


def test_worked_example_A_spechub_law():
    # SpecHub attains the optimum of its own hub-pair law: 0.771429 (docs/theory/membership_ot.md#worked-examples)
    assert round(optimal_acceptance(PA, QA, 2, "hub"), 6) == 0.771429


def test_worked_example_B():
    p, q = np.array([0.5, 0.5]), np.array([0.7, 0.3])
    res = optimal_cut(p, q, 2)
    assert res.value == pytest.approx(1.0, abs=1e-12)
    assert res.cut.size == 0
    assert optimal_acceptance(p, q, 1) == pytest.approx(0.8, abs=1e-12)


@pytest.mark.parametrize("q2, opt", [(0.0, 0.6667), (0.1, 0.8567), (0.2, 1.0), (1 / 3, 1.0), (0.5, 0.9722),
                                     (0.6, 0.7956), (0.18, 0.994267), (0.19, 1.0), (0.486, 0.99536)])
def test_worked_example_C_khisti_toy(q2, opt):
    p = np.full(3, 1 / 3)
    q = np.array([1 / 3, q2, 2 / 3 - q2])
    val = optimal_acceptance(p, q, 2)
    digits = len(str(opt).split(".")[1])
    assert round(val, digits) == pytest.approx(opt, abs=10.0 ** -digits / 2)
    if q2 == 0.2:
        assert optimal_acceptance(p, q, 2, "without_replacement") == pytest.approx(1.0, abs=1e-10)


def _perfect_condition(p, q):
    """p(S) >= q(S)^2 for every subset S."""
    V = p.size
    return all(p[list(s)].sum() >= q[list(s)].sum() ** 2 - 1e-13
               for r in range(1, V + 1) for s in combinations(range(V), r))


def test_k2_perfect_acceptance_condition():
    seen = {True: 0, False: 0}
    rng = np.random.default_rng(5)
    toy = [(np.full(3, 1 / 3), np.array([1 / 3, t, 2 / 3 - t])) for t in np.linspace(0, 2 / 3, 61)]
    instances = CASES + toy
    instances += [(rng.dirichlet(np.full(3, 4.0)), rng.dirichlet(np.full(3, 4.0))) for _ in range(60)]
    for p, q in instances:
        perfect = optimal_acceptance(p, q, 2) > 1 - 1e-12
        assert perfect == _perfect_condition(p, q), (p, q)
        seen[perfect] += 1
    assert seen[True] >= 10 and seen[False] >= 10


def test_khisti_toy_perfect_range():
    # alpha*_2 = 1 exactly for q2 in ~[0.1835, 0.4832] (docs/theory/membership_ot.md#iid-drafts)
    p = np.full(3, 1 / 3)
    for q2, perfect in [(0.183, False), (0.184, True), (0.3, True), (0.483, True), (0.4835, False)]:
        val = optimal_acceptance(p, np.array([1 / 3, q2, 2 / 3 - q2]), 2)
        assert (val > 1 - 1e-12) == perfect, (q2, val)


@pytest.mark.parametrize("law", ("iid", "without_replacement", "greedy"))
def test_k1_is_one_minus_tv(law):
    for p, q in CASES:
        assert optimal_acceptance(p, q, 1, law) == pytest.approx(1 - tv_distance(p, q), abs=1e-12)


@pytest.mark.parametrize("law", ("iid", "without_replacement"))
def test_nondecreasing_in_k(law):
    for p, q in CASES:
        vals = [optimal_acceptance(p, q, k, law) for k in range(1, 6) if feasible(law, q, k)]
        assert all(b >= a - 1e-10 for a, b in pairwise(vals)), (p, q, vals)


def test_without_replacement_at_least_iid():
    counterexamples = []
    for p, q in CASES:
        for k in range(2, 5):
            if feasible("without_replacement", q, k):
                wor, wr = optimal_acceptance(p, q, k, "without_replacement"), optimal_acceptance(p, q, k)
                if wor < wr - 1e-10:
                    counterexamples.append((p, q, k, wor, wr))
    assert not counterexamples


def test_zero_handling_and_order():
    p = np.array([0.0, 0.5, 0.5, 0.0])
    q = np.array([0.3, 0.0, 0.7, 0.0])
    order = ratio_order(p, q)
    assert order[0] == 0 and set(order[-2:].tolist()) == {1, 3}     # p = 0 first, q = 0 last
    for law in ("iid", "without_replacement"):
        res = optimal_cut(p, q, 2, law)
        assert np.isfinite(res.value) and 0 <= res.value <= 1
        assert 0 in res.cut                                         # a token with p = 0 is free
    # p == q: acceptance 1 with any number of drafts
    pq = np.array([0.25, 0.25, 0.5])
    for law in LAWS:
        assert optimal_acceptance(pq, pq, 2, law) == pytest.approx(1.0, abs=1e-12)


def test_without_replacement_large_vocabulary_consistent():
    rng = np.random.default_rng(11)
    p, q = rng.dirichlet(np.full(3000, 0.3)), rng.dirichlet(np.full(3000, 0.3))
    wr = optimal_cut(p, q, 4)
    wor = optimal_cut(p, q, 4, "without_replacement")
    assert wor.error_estimate < 1e-10
    assert wr.value - 1e-12 <= wor.value <= 1.0
    one = optimal_acceptance(p, q, 1, "without_replacement")
    assert one == pytest.approx(1 - tv_distance(p, q), abs=1e-10)


def test_without_replacement_exchange_lemma():
    # the lemma behind the prefix property without replacement (solvers/closed_form.py docstring):
    # (G(H + i) - G(H)) / q_i >= (G(H) - G(H - j)) / q_j for i outside H, j inside, G = P(all drafts in H)
    rng = np.random.default_rng(17)
    checks = 0
    for trial in range(60):
        V, k = int(rng.integers(3, 7)), int(rng.integers(2, 5))
        q = rng.dirichlet(np.full(V, (0.3, 1.0, 3.0)[trial % 3]))
        if k > V or q.min() < 1e-4:
            continue
        sets, probs = SET_LAWS["without_replacement"](q, k)
        masks = np.array([sum(1 << int(x) for x in set(r.tolist())) for r in sets])
        G = np.array([probs[(masks & ~H) == 0].sum() for H in range(1 << V)])
        for H in range(1 << V):
            inside = [j for j in range(V) if H >> j & 1]
            outside = [i for i in range(V) if not H >> i & 1]
            for i in outside:
                for j in inside:
                    left = (G[H | 1 << i] - G[H]) / q[i]
                    right = (G[H] - G[H & ~(1 << j)]) / q[j]
                    assert left >= right - 1e-12, (q, k, H, i, j)
                    checks += 1
    assert checks > 5000


@pytest.mark.parametrize("kwargs, match", [
    ({"p": [0.5, 0.5], "q": [0.5, 0.5], "k": 0}, "k"),
    ({"p": [0.5, np.nan], "q": [0.5, 0.5], "k": 2}, "p"),
    ({"p": [0.5, 0.5], "q": [0.5, 0.6], "k": 2}, "q"),
    ({"p": [0.5, 0.5], "q": [0.2, 0.3, 0.5], "k": 2}, "same length"),
    ({"p": [0.5, 0.5], "q": [0.5, 0.5], "k": 2, "draft_law": "bogus"}, "draft_law"),
    ({"p": [0.5, 0.5], "q": [0.5, 0.5], "k": 3, "draft_law": "hub"}, "k=2"),
    ({"p": [0.5, 0.5], "q": [1.0, 0.0], "k": 2, "draft_law": "without_replacement"}, "at least k"),
    ({"p": [0.5, 0.5], "q": [1.0, 0.0], "k": 2, "draft_law": "greedy"}, "at least k"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimal_cut(**kwargs)
