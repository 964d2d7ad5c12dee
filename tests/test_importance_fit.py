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

def _nearly_sorted(rng, n):
    """Ascending values with a shuffled window at the top (as the coarse floor targets are) or
    anywhere, with ties."""
    x = np.sort(rng.integers(0, max(2, n // 3), n).astype(float))
    w = int(rng.integers(0, n))
    x[w:] = rng.permutation(x[w:])
    return x


def test_groups_and_n_distinct_match_unique():
    from solvers.importance_weights import _groups, n_distinct

    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 50))
        x = _nearly_sorted(rng, n) if rng.random() < 0.7 else rng.integers(0, 9, n).astype(float)
        u, inv = np.unique(x, return_inverse=True)
        ratios, gid = _groups(x)
        assert np.array_equal(ratios, u) and np.array_equal(gid, inv.reshape(-1))
        assert n_distinct(x) == u.size


def test_top_prefix_precheck_is_sound():
    """When the pre-check rejects a lower bound, the full reachability check rejects every target
    that is entrywise above it and ascending in the same order (the skip never changes which
    coarse target is chosen)."""
    from solvers.importance_weights import _prefixes_reachable, _top_prefixes_fit

    rng = np.random.default_rng(4)
    k, rejected = 4, 0
    for _ in range(300):
        n = int(rng.integers(2, 40))
        q = rng.dirichlet(np.ones(n)) * rng.uniform(0.2, 1.0)
        lower = np.sort(rng.uniform(0.0, 2.0, n))
        total = q.sum() ** k

        def cap(Qc):
            return total - np.maximum(q.sum() - Qc, 0.0) ** k

        def need(Qc):
            return Qc ** k

        if not _top_prefixes_fit(q, lower, cap, min(64, n - 1)):
            rejected += 1
            for _ in range(5):
                # entrywise >= lower and still ascending in the same token order (as
                # max(grid, theta) is): e.g. a floor theta and random raises
                above = np.maximum(lower, rng.uniform(0, 2.0))
                above = np.maximum.accumulate(above * (1 + rng.uniform(0, 0.5, n) * (rng.random(n) < 0.5)))
                assert not _prefixes_reachable(q, above, cap, need, True)
    assert rejected > 20


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
