"""The exact float max-flow backend (``backend="flow"``, :mod:`solvers.flow_plan`).

Oracles: the closed forms (:func:`solvers.closed_form.optimal_acceptance`), the brute-force min cut
over all ``2^V`` subsets (``oracles.brute_force_optimum``, independent of any solver) and the HiGHS
LP. Value == closed form == brute force to 1e-12, == HiGHS to 1e-9; plan marginals to 1e-12;
masses from 1e-300 to 1, exact zeros, one-hot ``p`` or ``q``; forced augmenting paths.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from oracles import brute_force_optimum
from solver_laws import SET_LAWS, feasible

from solvers.closed_form import cut_value, optimal_acceptance, optimal_cut, ratio_order
from solvers.flow_plan import max_flow, prefix_cut
from solvers.membership_lp import draft_set_law, sets_from_tuples, solve_membership_ot

LAWS = ("iid", "without_replacement", "greedy", "hub")
TOL = 1e-12


def _mass(rng: np.random.Generator, V: int) -> np.ndarray:
    """A law on ``V`` tokens over the hard corners: one-hot, exact zeros, masses down to 1e-300."""
    kind = rng.integers(5)
    if kind == 0:
        x = np.zeros(V)
        x[rng.integers(V)] = 1.0
        return x
    x = rng.dirichlet(np.full(V, rng.choice([0.05, 0.3, 1.0])))
    u = rng.random(V)
    if kind >= 2:
        x = np.where(u < 0.2, 0.0, x)                                  # exact zeros
    if kind >= 3:
        x = np.where((u >= 0.2) & (u < 0.45), 10.0 ** rng.uniform(-300, -5, V), x)   # tiny masses
    if x.sum() <= 0:
        x[rng.integers(V)] = 1.0
    return x / x.sum()


def _named_cases(seed: int, n: int):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        V = int(rng.integers(1, 9))
        law = LAWS[len(out) % 4]
        k = 2 if law == "hub" else int(rng.integers(1, 5))
        p, q = _mass(rng, V), _mass(rng, V)
        if feasible(law, q, k) and not (law == "without_replacement" and V == 8 and k == 4):
            out.append((p, q, k, law))
    return out


def _explicit_cases(seed: int, n: int):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        V, k = int(rng.integers(1, 9)), int(rng.integers(1, 5))
        N = int(rng.integers(1, 40))
        out.append((_mass(rng, V), rng.integers(0, V, size=(N, k)), _mass(rng, N)))
    return out


def _check_plan(res, p, set_probs=None):
    """Both marginals of the complete plan to 1e-12, a kernel per set, acceptance == value."""
    plan = res.plan
    assert np.abs(plan.output_law() - p).max() <= TOL
    K = plan.conditional_matrix()
    assert (K >= 0).all() and np.abs(K.sum(axis=1) - 1).max() <= TOL
    assert np.abs(plan.set_probs @ K - p).max() <= TOL
    rows = np.bincount(plan.edge_set, weights=plan.edge_flow, minlength=plan.n_sets)
    assert np.abs(rows + plan.set_leftover - plan.set_probs).max() <= TOL
    if set_probs is not None:
        assert np.abs(plan.set_probs - set_probs).max() <= TOL
    members = np.zeros(K.shape, dtype=bool)
    for s, row in enumerate(plan.sets):
        members[s, row[row >= 0]] = True
    assert float((plan.set_probs[:, None] * K * members).sum()) == pytest.approx(res.value, abs=TOL)


def _flow(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)             # a failed verification fails here
        return solve_membership_ot(*args, backend="flow", **kwargs)


@pytest.mark.parametrize("law", LAWS)
def test_named_laws_match_closed_form_brute_force_and_highs(law):
    n = 0
    for p, q, k, case_law in _named_cases(13, 240):
        if case_law != law:
            continue
        res = _flow(p, q, k, draft_law=law)
        assert res.success and res.status == 0 and res.backend.startswith("flow")
        closed = optimal_cut(p, q, k, law)
        best, _ = brute_force_optimum(p, *SET_LAWS[law](q, k))
        assert res.value == pytest.approx(best, abs=TOL), (p, q, k)
        assert closed.success
        assert res.value == pytest.approx(closed.value, abs=TOL), (p, q, k)
        assert res.certificate_value == pytest.approx(res.value, abs=TOL)
        assert res.certificate_value == pytest.approx(cut_value(res.plan.p, res.plan.sets,
                                                                res.plan.set_probs, res.cut), abs=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lp = solve_membership_ot(p, q, k, draft_law=law, backend="highs")
        assert res.value == pytest.approx(lp.value, abs=1e-9)
        _check_plan(res, p)
        n += 1
    assert n == 60


def test_explicit_tuple_laws_match_brute_force_and_highs():
    for p, tuples, probs in _explicit_cases(5, 80):
        res = _flow(p, draft_law=(tuples, probs))
        best, _ = brute_force_optimum(p, tuples, probs)
        assert res.success and res.draft_law == "explicit"
        assert res.value == pytest.approx(best, abs=TOL)
        assert res.certificate_value == pytest.approx(best, abs=TOL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lp = solve_membership_ot(p, draft_law=(tuples, probs), backend="highs")
        assert res.value == pytest.approx(lp.value, abs=1e-9)
        _check_plan(res, p, sets_from_tuples(tuples, probs)[1])


def test_augmenting_paths_from_any_greedy_order():
    """Every visiting order of the greedy start (most leave work for the augmenting paths) ends at
    the brute-force min cut, with a feasible flow and a cut of the same value."""
    rng = np.random.default_rng(11)
    n_paths = 0
    for p, tuples, probs in _explicit_cases(17, 150):
        sets, Q = sets_from_tuples(tuples, probs)
        F, cut, count, finished = max_flow(p, sets, Q, order=rng.permutation(p.size))
        best, _ = brute_force_optimum(p, tuples, probs)
        assert finished
        n_paths += count
        on = F > 0
        assert (F >= 0).all() and (F[sets < 0] == 0).all()
        assert (F.sum(axis=1) <= Q * (1 + 4e-16)).all()
        assert (np.bincount(sets[on], weights=F[on], minlength=p.size) <= p * (1 + 4e-16)).all()
        assert F.sum() == pytest.approx(best, abs=TOL)
        assert cut_value(p, sets, Q, cut) == pytest.approx(best, abs=TOL)
    assert n_paths > 20                                          # the paths were exercised


def test_flow_is_not_a_scaled_integer_flow():
    """Masses below the int32 scaling step (2^-31 ~ 4.7e-10) are transported exactly: the
    scaled-integer backend misses them by more than 1e-10, the float flow is exact to 1e-15 and
    fills a token of target mass 1e-300 with exactly that mass."""
    q = np.array([0.6, 0.4 - 3e-10, 1e-10, 1e-10, 1e-10])
    p = np.array([0.3, 0.7 - 3e-10 - 1e-300, 1e-10, 1e-10, 1e-10 + 1e-300])
    closed = optimal_acceptance(p, q, 2, "without_replacement")
    res = _flow(p, q, 2, draft_law="without_replacement")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scaled = solve_membership_ot(p, q, 2, draft_law="without_replacement", backend="maxflow")
    assert abs(res.value - closed) <= 1e-15
    assert abs(scaled.value - closed) > 1e-10
    # a token with p = 1e-300 inside the cut is filled by the membership flow to full relative accuracy
    p2 = np.array([0.5, 0.5, 1e-300])
    q2 = np.array([0.2, 0.3, 0.5])
    res = _flow(p2, q2, 2, draft_law="without_replacement")
    assert 2 in res.cut
    into = np.bincount(res.plan.edge_token, weights=res.plan.edge_flow, minlength=3)
    assert into[2] == pytest.approx(1e-300, rel=1e-12)
    assert res.value == pytest.approx(optimal_acceptance(p2, q2, 2, "without_replacement"), abs=1e-15)


def test_without_replacement_set_law_with_a_tiny_rest():
    """Regression: ``q(S^c)`` was ``1 - q(S)`` in extended precision, 0 once ``q(S^c) < 1e-19``,
    which gave every 4-set here the law 1/3 (LP and flow value 0.5685 instead of 0.0646)."""
    q = np.array([4.76197554e-253, 2.59094853e-007, 1.54583442e-009, 6.62574782e-242,
                  9.99999739e-001, 0.0, 5.68205938e-250])
    q = q / q.sum()
    p = np.array([7.64786969e-01, 1.54828755e-09, 2.57927362e-02, 3.87710696e-02, 2.39050368e-10,
                  1.84449971e-07, 1.70649039e-01])
    p = p / p.sum()
    sets, Q, _ = draft_set_law(p, q, 4, "without_replacement")
    rows, probs = SET_LAWS["without_replacement"](q, 4)
    ref = {frozenset(r.tolist()): v for r, v in zip(rows, probs)}
    for s, v in zip(sets, Q):
        assert v == pytest.approx(ref.get(frozenset(s[s >= 0].tolist()), 0.0), rel=1e-12, abs=1e-300)
    alpha = optimal_acceptance(p, q, 4, "without_replacement")
    assert _flow(p, q, 4, draft_law="without_replacement").value == pytest.approx(alpha, abs=TOL)
    assert alpha == pytest.approx(0.06456381609515671, abs=1e-9)


@pytest.mark.parametrize("law, k", [("hub", 2), ("greedy", 4)])
def test_vocabulary_sized_hub_and_greedy(law, k):
    """V = 3000 (tokens sharing no set are served in batches): exact value, verified plan."""
    rng = np.random.default_rng(4)
    p, q = rng.dirichlet(np.full(3000, 0.1)), rng.dirichlet(np.full(3000, 0.1))
    res = _flow(p, q, k, draft_law=law)
    assert res.success and res.value == pytest.approx(optimal_acceptance(p, q, k, law), abs=TOL)
    assert np.abs(res.plan.output_law() - p).max() <= TOL


def test_auto_uses_flow_for_non_iid_laws_and_layout_for_iid():
    p, q = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.2, 0.2, 0.3, 0.3])
    for law in ("without_replacement", "greedy", "hub"):
        res = solve_membership_ot(p, q, 2, draft_law=law)
        assert res.backend.startswith("flow") and res.success
    tuples = np.array([[0, 1], [2, 3], [1, 1]])
    assert solve_membership_ot(p, draft_law=(tuples, np.array([0.5, 0.3, 0.2]))).backend.startswith("flow")
    assert not solve_membership_ot(p, q, 2).backend.startswith("flow")
    res = solve_membership_ot(p, q, 2, draft_law="without_replacement")
    assert round(res.value, 6) == 0.921429                     # worked example of the docs page


def test_failed_verification_warns_or_falls_back(monkeypatch):
    import solvers.flow_plan as fp

    monkeypatch.setattr(fp, "verify_plan", lambda *a, **k: "forced failure")
    p, q = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.2, 0.2, 0.3, 0.3])
    with pytest.warns(RuntimeWarning, match="forced failure"):
        res = solve_membership_ot(p, q, 2, draft_law="without_replacement", backend="flow")
    assert not res.success and res.status == 3
    res = solve_membership_ot(p, q, 2, draft_law="without_replacement")        # auto: the LP instead
    assert res.success and res.backend.startswith("highs") and "forced failure" in res.message
    assert res.value == pytest.approx(0.921429, abs=1e-6)


def test_certificate_gap_is_checked_once_by_the_flow_verification(monkeypatch):
    """A flow solve whose certificate is a poor cut (forced: the empty cut, value 1) fails the
    flow's own verification, the one gap check of the flow backend (status 3, a warning naming
    it; under ``auto`` the HiGHS LP)."""
    import solvers.flow_plan as fp

    calls = []
    verify = fp.verify_plan
    monkeypatch.setattr(fp, "verify_plan", lambda *a: calls.append(a) or verify(*a))
    monkeypatch.setattr(fp, "prefix_cut", lambda *a: (np.zeros(0, dtype=np.int64), -1.0))
    p, q = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.2, 0.2, 0.3, 0.3])
    with pytest.warns(RuntimeWarning, match="flow plan failed verification: certificate gap 7.9e-02"):
        res = solve_membership_ot(p, q, 2, draft_law="without_replacement", backend="flow")
    assert not res.success and res.status == 3 and res.certificate_value == 1.0 and len(calls) == 1
    res = solve_membership_ot(p, q, 2, draft_law="without_replacement")        # auto: the LP instead
    assert res.success and res.backend.startswith("highs") and "certificate gap" in res.message


def test_augmentation_limit_is_reported():
    """A law whose greedy start leaves one augmenting path: with none allowed the search reports
    ``finished=False`` (solve: status 1, a warning, or the LP under ``auto``)."""
    p = np.array([0.6, 0.2, 0.2])
    tuples, probs = np.array([[2, 0], [0, 1], [0, 1]]), np.array([0.625, 0.25, 0.125])
    sets, Q = sets_from_tuples(tuples, probs)
    F, _, count, finished = max_flow(p, sets, Q)
    assert finished and count == 1 and F.sum() == pytest.approx(1.0, abs=TOL)
    F, _, count, finished = max_flow(p, sets, Q, max_augmentations=0)
    assert not finished and count == 0 and F.sum() < 1.0 - 1e-3


def _augmenting_law(V: int = 200, k: int = 4, N: int = 20_000):
    """An explicit tuple law whose greedy start leaves 94 augmenting paths (0.2 s of work)."""
    rng = np.random.default_rng(0)
    return rng.dirichlet(np.ones(V)), rng.integers(0, V, size=(N, k)), rng.dirichlet(np.ones(N))


def test_time_limit_stops_the_augmenting_paths():
    """A 1 microsecond limit stops the flow before its first augmenting path: success=False,
    status 1, a RuntimeWarning naming the time limit, under ``"flow"`` and ``"auto"`` (no LP
    fallback); the plan is still feasible with exact marginals and the value and certificate
    bracket the optimum. Without a limit the same law is solved exactly."""
    p, tuples, probs = _augmenting_law()
    law = (tuples, probs)
    full = _flow(p, draft_law=law)
    assert full.success and "94 augmenting paths" in full.message
    for backend in ("flow", "auto"):
        with pytest.warns(RuntimeWarning, match="time limit"):
            res = solve_membership_ot(p, draft_law=law, backend=backend, time_limit=1e-6)
        assert not res.success and res.status == 1 and res.backend.startswith("flow")
        assert "time limit of 1e-06 s reached after 0 augmenting paths" in res.message
        assert res.value < full.value - 1e-6 <= full.value <= res.certificate_value + TOL
        assert np.abs(res.plan.output_law() - p).max() <= TOL
    sets, Q = sets_from_tuples(tuples, probs)
    F, _, count, finished = max_flow(p, sets, Q, time_limit=1e-6)
    assert not finished and count == 0 and F.sum() < full.value - 1e-6


def test_time_limit_is_validated():
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5])
    for bad in (0, -1.0, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="^time_limit "):
            solve_membership_ot(p, q, 2, draft_law="without_replacement", backend="flow", time_limit=bad)
        with pytest.raises(ValueError, match="^time_limit "):
            max_flow(p, np.array([[0, 1]]), np.array([1.0]), time_limit=bad)
    res = _flow(p, q, 2, draft_law="without_replacement", time_limit=np.float32(10))
    assert res.success                                        # a finished flow is never reported late


def test_max_flow_input_validation():
    sets, Q = np.array([[0, 1], [1, -1]]), np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="^p "):
        max_flow(np.array([0.5, -0.5]), sets, Q)
    with pytest.raises(ValueError, match="^sets "):
        max_flow(np.array([0.5, 0.5]), np.array([[0, 2]]), np.array([1.0]))
    with pytest.raises(ValueError, match="^sets "):
        max_flow(np.array([0.5, 0.5]), np.array([[0.0, 1.0]]), np.array([1.0]))
    with pytest.raises(ValueError, match="^set_probs "):
        max_flow(np.array([0.5, 0.5]), sets, np.array([1.0]))
    with pytest.raises(ValueError, match="^order "):
        max_flow(np.array([0.5, 0.5]), sets, Q, order=np.array([0, 0]))


def test_prefix_cut_equals_closed_form_cut():
    """The certificate's prefix scan, evaluated exactly on the set law, equals the closed form."""
    n = 0
    for p, q, k, law in _named_cases(21, 60):
        if law not in ("iid", "without_replacement"):
            continue
        sets, Q, _ = draft_set_law(p, q, k, law)
        _, value = prefix_cut(p, sets, Q, ratio_order(p, q))
        assert value == pytest.approx(optimal_cut(p, q, k, law).value, abs=TOL)
        n += 1
    assert n == 30


def test_bad_input_and_size_refusal():
    p = np.full(40, 1 / 40)
    with pytest.raises(ValueError, match="too large"):
        solve_membership_ot(p, p, 4, draft_law="without_replacement", backend="flow", max_sets=10_000)
    with pytest.raises(ValueError, match="backend"):
        solve_membership_ot(p, p, 2, backend="flows")
    with pytest.raises(ValueError, match="^p "):
        solve_membership_ot([0.5, 0.6], [0.5, 0.5], 2, draft_law="greedy", backend="flow")
    with pytest.raises(ValueError, match="q"):
        solve_membership_ot([0.5, 0.5], [0.5, -0.5], 2, draft_law="greedy", backend="flow")
    with pytest.raises(ValueError, match="drafts"):
        solve_membership_ot([0.5, 0.5], draft_law=(np.array([[0, 2]]), np.array([1.0])), backend="flow")
    with pytest.raises(ValueError, match="k="):
        solve_membership_ot([0.5, 0.5], [1.0, 0.0], 2, draft_law="without_replacement", backend="flow")


# ----------------------------------------------------------------------------- property test
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: examples of the property test: ``ci`` (default, derandomised) or ``long`` (HYPOTHESIS_PROFILE=long)
EXAMPLES = {"ci": 40, "long": 2000}.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), 40)
_MASS = st.one_of(st.just(0.0), st.just(1.0), st.floats(-300.0, 0.0).map(lambda e: 10.0 ** e),
                  st.floats(1e-3, 1.0))


def _normalised(xs):
    x = np.array(xs, dtype=np.float64)
    if x.sum() <= 0:
        x[0] = 1.0
    return x / x.sum()


@st.composite
def explicit_problems(draw):
    V, k = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    N = draw(st.integers(1, 12))
    p = _normalised(draw(st.lists(_MASS, min_size=V, max_size=V)))
    tuples = np.array(draw(st.lists(st.lists(st.integers(0, V - 1), min_size=k, max_size=k),
                                    min_size=N, max_size=N)))
    probs = _normalised(draw(st.lists(_MASS, min_size=N, max_size=N)))
    return p, tuples, probs


@settings(max_examples=EXAMPLES, derandomize=EXAMPLES <= 40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(explicit_problems(), st.permutations(range(6)))
def test_property_flow_equals_brute_force(case, perm):
    """Any explicit tuple law, any greedy order: flow value == cut value == brute-force min cut."""
    p, tuples, probs = case
    order = np.array([i for i in perm if i < p.size])
    sets, Q = sets_from_tuples(tuples, probs)
    F, cut, _, finished = max_flow(p, sets, Q, order=order)
    best, _ = brute_force_optimum(p, tuples, probs)
    assert finished
    assert F.sum() == pytest.approx(best, abs=TOL)
    assert cut_value(p, sets, Q, cut) == pytest.approx(best, abs=TOL)
    res = _flow(p, draft_law=(tuples, probs))
    assert res.success and res.value == pytest.approx(best, abs=TOL)
    assert np.abs(res.plan.output_law() - p).max() <= TOL
