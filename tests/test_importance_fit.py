"""The importance-weight fit's mapped Newton steps (ot_coupling.kernels.importance, issue 13).

The coarse phase maps each Newton step through a one-group logistic model of ``phi`` between the
limits of :func:`group_range`; these tests check those limits against the quadrature itself, that
the map is the identity to first order, and that the fit keeps its exactness while needing fewer
steps than plain Newton.
"""

from __future__ import annotations

import numpy as np
import pytest

from ot_coupling.kernels import importance as ki


def _level(seed: int, G: int, floor: float, k: int):
    rng = np.random.default_rng(seed)
    mass = rng.dirichlet(np.ones(G))[None] * (1 - floor)
    return mass, np.array([floor]), k


@pytest.mark.parametrize("floor", [0.0, 0.3, 0.97])
@pytest.mark.parametrize("k", [2, 8])
def test_group_range_is_the_limit_of_phi(floor, k):
    """``lo`` (own weight -> 0) and ``hi`` (own weight -> inf) against the fine quadrature."""
    mass, fl, k = _level(1, 6, floor, k)
    lo, hi = ki.group_range(mass, fl, k)
    for g in range(mass.shape[1]):
        for z_g, want in ((-45.0, lo[0, g]), (45.0, hi[0, g])):
            z = np.zeros_like(mass)
            z[0, g] = z_g
            z -= z.max()
            lam = np.exp(z)
            l_min, l_max = lam.min(axis=1), lam.max(axis=1)
            panels = ki.n_panels(l_min, l_max, k)
            t, w = ki.quadrature_nodes(l_min, l_max, k, panels)
            phi = ki.evaluate(lam, mass, fl, k, t, w)[2]
            assert phi[0, g] == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert np.all(hi >= lo)


def test_map_step_is_newton_to_first_order_and_exact_at_the_ends():
    mass, fl, k = _level(2, 5, 0.2, 8)
    lo, hi = ki.group_range(mass, fl, k)
    u = np.array([[1e-6, 0.3, 0.5, 0.7, 1 - 1e-6]])
    phi = lo + u * (hi - lo)
    s = np.array([[0.2, -0.1, 0.05, 0.1, -0.3]])
    s -= (mass * s).sum() / mass.sum()           # the map's gauge: zero mass-weighted mean
    small = ki.map_step(1e-7 * s, phi, mass, lo, hi)
    np.testing.assert_allclose(small, 1e-7 * s, rtol=1e-6, atol=1e-10)  # u near 1: 1 - u to 1e-10
    big = ki.map_step(s, phi, mass, lo, hi)
    # near the low end log(1 + s), near the high end -log(1 - s) (u (1 - u) s is the predicted move)
    assert big[0, 0] == pytest.approx(np.log1p(s[0, 0]), rel=1e-5)
    assert big[0, 4] == pytest.approx(-np.log1p(-s[0, 4]), rel=1e-5)
    # a step that would cross an end moves u at most by exp(-MAX_LOGIT_STEP) towards it
    cross = ki.map_step(np.array([[-50.0, 0, 0, 0, 0]]) - 0.0, phi, mass, lo, hi)
    assert np.isfinite(cross).all()
    assert abs(cross[0, 0]) <= ki.MAX_LOGIT_STEP + 1e-6 + abs(np.log1p(-u[0, 0]))


@pytest.mark.parametrize("alpha", [1.0, 0.05])
def test_fit_is_exact_and_needs_few_steps(alpha):
    """The optimal verifier's fit at V = 8192, k = 8: acceptance alpha* to 1e-12, converged, and
    at most 7 Newton steps per level (plain Newton needed 8-13 on these rows)."""
    from solvers.closed_form import optimal_acceptance
    from solvers.importance_weights import importance_plan

    rng = np.random.default_rng(5)
    V = 8192
    for _ in range(2):
        p, q = rng.dirichlet(np.full(V, alpha)), rng.dirichlet(np.full(V, alpha))
        plan = importance_plan(p[None], q[None], 8)
        assert plan.success and plan.status == 0
        assert plan.iterations <= 7
        acc = np.minimum(plan.marginal[0], p).sum()
        assert acc == pytest.approx(optimal_acceptance(p, q, 8), abs=1e-12)


# ---- the per-row fast path in the selection scan's order (issue 13, fitspeed2) ----

def _law(rng, kind: str, V: int):
    if kind in ("softmax", "near"):
        z = rng.normal(0.0, 3.0, (2, V))
        if kind == "near":                  # a draft close to the target, as LLM pairs are: H's
            z[1] = z[0] + rng.normal(0.0, rng.choice([0.3, 1.0]), V)   # floors nearly tight
        e = np.exp(z - z.max(1, keepdims=True))
        return e[0] / e[0].sum(), e[1] / e[1].sum()
    p, q = rng.dirichlet(np.full(V, float(kind)), 2)
    if rng.random() < 0.5:                   # p = 0 tokens and masses down to 1e-300
        p[rng.integers(0, V, 20)] = 0.0
        q[rng.integers(0, V, 5)] *= 1e-290
        p, q = p / p.sum(), q / q.sum()
    return p, q


@pytest.mark.parametrize("kind", ["1", "0.05", "softmax", "near"])
def test_level_targets_keep_caps_floors_totals_and_reachability(kind):
    """The coarse targets of both levels are runs of the scan's order with their masses; they keep
    the floors ``r >= p`` on H and the caps ``r <= p`` on A with the level totals, lie in the
    selection polytope (checked on the whole law by ``selection_law_violation``, an independent
    prefix test) and so reach alpha* exactly; and they are coarse (few groups)."""
    from ot_coupling.kernels.selection import selection_scan
    from solvers.closed_form import optimal_acceptance
    from solvers.importance_weights import level_targets
    from solvers.selection_law import selection_law_violation

    rng = np.random.default_rng(11)
    coarse = 0
    for case in range(12):
        V, k = int(rng.integers(1500, 4000)), int(rng.choice([2, 4, 8, 32]))
        p, q = _law(rng, kind, V)
        s = selection_scan(p[None], q[None], k)
        ps, qs, ratio, cut = s.ps[0], s.qs[0], s.ratio[0], int(s.cut[0])
        n = int(np.count_nonzero(qs > 0))
        r = np.zeros(V)
        for top, lo, hi in ((False, 0, min(cut, n)), (True, min(cut, n), n)):
            if hi <= lo:
                continue
            g = level_targets(ps[lo:hi], qs[lo:hi], ratio[lo:hi], k, top)
            assert g.counts.sum() == hi - lo and np.all(g.counts > 0) and np.all(np.diff(g.values) > 0)
            starts = np.concatenate([[0], np.cumsum(g.counts)[:-1]])
            np.testing.assert_allclose(g.masses, np.add.reduceat(qs[lo:hi], starts), rtol=1e-13, atol=0)
            t = np.repeat(g.values, g.counts)
            pi = ps[lo:hi] / qs[lo:hi]
            level_total = 1 - (1 - qs[lo:hi].sum()) ** k if top else qs[lo:hi].sum() ** k
            assert np.all(t <= pi) if top else np.all(t >= pi)
            assert abs((qs[lo:hi] * t).sum() - level_total) <= 1e-14
            coarse += not g.exact
            r[lo:hi] = qs[lo:hi] * t
        want = optimal_acceptance(p, q, k, draft_law="iid")
        want = getattr(want, "value", want)
        assert abs(np.minimum(r, ps).sum() - want) < 1e-13
        # the check's own prefix sums and coverage 1 - (1 - Q)^k err by up to ~kV ulps of 1
        assert selection_law_violation(r[np.argsort(s.order[0])], q, k) <= k * V * 2.0**-52
    assert coarse >= (12 if kind != "near" else 6)   # most levels are coarse (fewer with tight floors)


def test_reachable_agrees_with_brute_force_over_all_subsets():
    """``_reachable`` (descending-prefix test at the group ends) against all 2^G subsets of a
    level ``H`` (``r(S) <= q(H)^k - (q(H) - q(S))^k``), on random targets near the boundary."""
    from itertools import combinations

    from solvers.importance_weights import _reachable

    rng = np.random.default_rng(12)
    agree = {True: 0, False: 0}
    for _ in range(300):
        G, k = int(rng.integers(2, 8)), int(rng.choice([2, 3, 8]))
        m = rng.dirichlet(np.ones(G)) * rng.uniform(0.3, 1.0)
        total, qt = m.sum() ** k, m.sum()
        v = np.sort(rng.uniform(0.2, 1.5, G) ** rng.uniform(1.0, 4.0))
        v *= total / (m * v).sum()                       # the level's total

        def cap(Qc):
            return total - np.maximum(qt - Qc, 0.0) ** k

        def need(Qc):
            return Qc ** k

        slack = min(cap(m[list(S)].sum()) - (m * v)[list(S)].sum()
                    for size in range(1, G) for S in combinations(range(G), size))
        if abs(slack) < 1e-12:
            continue
        assert _reachable(m, v, cap, need) == (slack > 0)
        agree[slack > 0] += 1
    assert min(agree.values()) > 30


@pytest.mark.parametrize("alpha", [1.0, 0.05])
def test_plan_in_scan_order_is_exact_numpy_and_torch(alpha):
    """numpy and torch plans (both fitted in the scan's order by ``fit_sorted_row``) reach alpha*
    to 1e-12 with status 0 and give the same weights; the scan without ``r`` equals the full one."""
    torch = pytest.importorskip("torch")
    from gpu_backend.optimal import importance_plan as torch_plan
    from ot_coupling.kernels.selection import selection_scan
    from solvers.closed_form import optimal_acceptance
    from solvers.importance_weights import importance_plan

    rng = np.random.default_rng(5)
    V, k = 3000, 8
    p = rng.dirichlet(np.full(V, alpha), 2)
    q = rng.dirichlet(np.full(V, alpha), 2)
    q[0, :7] = 0.0                       # q = 0 tokens come last in the scan's order
    q /= q.sum(1, keepdims=True)
    full, lean = selection_scan(p, q, k), selection_scan(p, q, k, marginal=False)
    assert lean.r is None
    for name in ("order", "cut", "alpha", "ratio", "theta_a", "theta_b", "q_cut"):
        assert np.array_equal(getattr(full, name), getattr(lean, name))
    plan = importance_plan(p, q, k)
    tplan = torch_plan(torch.from_numpy(p), torch.from_numpy(q), k)
    assert plan.status == 0 and tplan.status == 0
    for b in range(2):
        want = optimal_acceptance(p[b], q[b], k, draft_law="iid")
        want = getattr(want, "value", want)
        assert abs(np.minimum(plan.marginal[b], p[b]).sum() - want) < 1e-12
        assert abs(float(torch.minimum(tplan.marginal[b], torch.from_numpy(p[b])).sum()) - want) < 1e-12
    np.testing.assert_allclose(tplan.weights.numpy(), plan.weights, rtol=1e-9, atol=0)  # torch renormalises p, q
    assert np.array_equal(tplan.top.numpy(), plan.top)


def test_a_target_of_zero_does_not_freeze_the_fit():
    """k = 64, a level whose one group aims at 0 (p = 0 on a drafted token): that group sits at the
    weight floor with a Newton step of order 1/curvature (~1e7), which used to dominate the damping
    and stall the fit at an L1 error of 0.03 (acceptance 0.985 instead of 1); found by a stress run."""
    from solvers.closed_form import optimal_acceptance
    from solvers.importance_weights import importance_plan

    p = np.array([0.32788210557268876, 0.0, 0.6721178944273112])
    q = np.array([0.35830307239469544, 0.5103035533776247, 0.13139337422767994])
    fit = ki.fit_levels(ki.LevelProblems(q[None], (p / q)[None], np.zeros(1), 64))
    assert fit.status == 0 and fit.l1_error[0] <= 1e-12
    plan = importance_plan(p[None], q[None], 64)
    assert plan.status == 0
    assert abs(np.minimum(plan.marginal[0], p).sum() - optimal_acceptance(p, q, 64)) <= 1e-12
