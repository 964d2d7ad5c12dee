"""The shared kernels of :mod:`ot_coupling.kernels` on every backend (POT's backend-fixture pattern).

Each kernel is one function written against the array API; the ``nx`` fixture runs it on numpy, on
torch (CPU, float64) and on torch CUDA (skipped without a GPU), and every result must equal the
numpy run to 1e-12 in float64. Float32 inputs: the tolerances of docs/backends.md, measured here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ot_coupling.kernels import importance as K_imp
from ot_coupling.kernels import kseq as K_kseq
from ot_coupling.kernels import rrs as K_rrs

torch = pytest.importorskip("torch")

from backends import Backend  # noqa: E402

TOL64 = 1e-12


@pytest.fixture(params=["numpy", "torch-cpu", "torch-cuda"])
def nx(request):
    if request.param == "torch-cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA")
    return Backend(request.param)


def _pairs(B: int, V: int, seed: int, alpha: float = 1.0):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(V, alpha), size=B)
    Q = rng.dirichlet(np.full(V, alpha), size=B)
    P[0] = Q[0]                      # p == q: rho* = 1
    P[1, : V // 2] = 0.0             # zeros in p
    P[1] /= P[1].sum()
    Q[2, V // 3:] = 0.0              # zeros in q
    Q[2] /= Q[2].sum()
    return P, Q


# ------------------------------------------------------------------ K-SEQ
@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_kseq_rho_and_acceptance(nx, k):
    P, Q = _pairs(12, 60, k)
    ref = K_kseq.kseq_rho(P, Q, k)
    got = nx.np(K_kseq.kseq_rho(nx.of(P), nx.of(Q), k))
    np.testing.assert_allclose(got, ref, rtol=TOL64, atol=0)
    # an independent algorithm: bisection on the full beta
    from ot_coupling.kseq import kseq_rho_batch
    inner = ref > 1 + 1e-6
    np.testing.assert_allclose(ref[inner], kseq_rho_batch(P, Q, k, "bisect")[inner], rtol=1e-13)
    # smallest valid float: rho* valid, its predecessor not (up to g's round-off)
    gap = K_kseq.validity_gap(np, np.minimum(Q, P / ref[:, None]).sum(1), ref, k)
    assert (gap <= 8 * np.finfo(float).eps).all()
    acc_ref = K_kseq.kseq_acceptance(P, Q, ref, k)
    acc = nx.np(K_kseq.kseq_acceptance(nx.of(P), nx.of(Q), nx.of(ref), k))
    np.testing.assert_allclose(acc, acc_ref, rtol=0, atol=TOL64)
    res_ref, beta_ref = K_kseq.kseq_residual(P, Q, ref, k)
    res, beta = K_kseq.kseq_residual(nx.of(P), nx.of(Q), nx.of(ref), k)
    np.testing.assert_allclose(nx.np(res), res_ref, rtol=0, atol=TOL64)
    np.testing.assert_allclose(nx.np(beta), beta_ref, rtol=0, atol=TOL64)


# ------------------------------------------------------------------ RRS
@pytest.mark.parametrize("wor", [False, True])
def test_rrs_plan(nx, wor):
    P, Q = _pairs(10, 40, 5)
    rng = np.random.default_rng(1)
    D = np.stack([rng.choice(40, size=4, replace=not wor, p=None) for _ in range(10)])
    ref = K_rrs.rrs_plan(P, Q, D, wor)
    got = K_rrs.rrs_plan(nx.of(P), nx.of(Q), nx.of(D), wor)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(nx.np(a), b, rtol=0, atol=TOL64)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rrs_acceptances(nx, k):
    P, Q = _pairs(6, 30, 11 + k)
    np.testing.assert_allclose(nx.np(K_rrs.rrs_acceptance(nx.of(P), nx.of(Q), k)),
                               K_rrs.rrs_acceptance(P, Q, k), rtol=0, atol=TOL64)
    Qw = Q[3:]                                   # rows with at least k tokens of q > 0
    Pw = P[3:]
    np.testing.assert_allclose(nx.np(K_rrs.rrs_wor_acceptance(nx.of(Pw), nx.of(Qw), k)),
                               K_rrs.rrs_wor_acceptance(Pw, Qw, k), rtol=0, atol=TOL64)


def test_rrs_wor_budget_is_one_constant():
    from gpu_backend.rrs import MAX_PATHS as torch_budget
    from ot_coupling.rrs import MAX_HISTORIES

    assert MAX_HISTORIES == torch_budget == K_rrs.MAX_PATHS
    rng = np.random.default_rng(3)
    P, Q = rng.dirichlet(np.ones(40), size=1), rng.dirichlet(np.ones(40), size=1)
    with pytest.raises(ValueError, match="rejection histories"):
        K_rrs.rrs_wor_acceptance(P, Q, 6, max_paths=100)


# ------------------------------------------------------------------ importance fit
def _level_problems(seed: int = 9):
    rng = np.random.default_rng(seed)
    mass = rng.dirichlet(np.ones(40), size=3) * np.array([[1.0], [0.5], [0.2]])
    mass[1, 30:] = 0.0                                                    # padding groups
    ratio = rng.uniform(0.5, 1.5, size=(3, 40))
    ratio /= (mass * ratio).sum(1, keepdims=True) / (mass.sum(1, keepdims=True) ** 3)  # k = 3 totals
    return mass, ratio, np.zeros(3)


def test_fit_levels(nx):
    mass, ratio, floor = _level_problems()
    ref = K_imp.fit_levels(K_imp.LevelProblems(mass, ratio, floor, 3))
    got = K_imp.fit_levels(K_imp.LevelProblems(nx.of(mass), nx.of(ratio), nx.of(floor), 3))
    assert ref.success and got.success and got.status == 0 and got.message == ref.message
    assert got.iterations == ref.iterations
    np.testing.assert_allclose(nx.np(got.phi), ref.phi, rtol=0, atol=TOL64)
    np.testing.assert_allclose(nx.np(got.weights), ref.weights, rtol=1e-10, atol=TOL64)
    np.testing.assert_allclose(nx.np(got.quad_bound), ref.quad_bound, rtol=1e-12)
    assert (nx.np(got.l1_error) <= 1e-12).all()


def test_fit_levels_reports_non_convergence(nx):
    mass, ratio, floor = _level_problems(4)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        fit = K_imp.fit_levels(K_imp.LevelProblems(nx.of(mass), nx.of(ratio), nx.of(floor), 3),
                               max_iter=1, tol=1e-15, warn=True)
    assert not fit.success and fit.status == 1 and "iteration limit" in fit.message
    assert fit.value > 1e-15


@pytest.mark.parametrize("G", [20, 150])     # G x G normalised Laplacian, and Woodbury (G > N)
def test_newton_step_and_quadrature(nx, G):
    rng = np.random.default_rng(33)
    k = 4
    t, w = K_imp.quadrature_nodes(np.array([1e-3]), np.ones(1), k, 3, K_imp.FINE_RULE)  # N = 74
    tt, ww = K_imp.quadrature_nodes(nx.of(np.array([1e-3])), nx.of(np.ones(1)), k, 3, K_imp.FINE_RULE)
    np.testing.assert_allclose(nx.np(tt), t, rtol=TOL64)
    np.testing.assert_allclose(nx.np(ww), w, rtol=TOL64)
    mass = rng.dirichlet(np.ones(G))[None]
    lam = np.exp(rng.uniform(-6, 0, size=(1, G)))
    grad = rng.normal(size=(1, G)) * 1e-3
    grad -= grad.mean()
    E, M, phi = K_imp.evaluate(lam, mass, np.zeros(1), k, t, w)
    ref = K_imp.newton_step(lam, mass, grad, E, M, k, t, w)[0]
    args = [nx.of(a) for a in (lam, mass, np.zeros(1))]
    Et, Mt, phit = K_imp.evaluate(*args, k, tt, ww)
    np.testing.assert_allclose(nx.np(phit), phi, rtol=TOL64)
    got = nx.np(K_imp.newton_step(args[0], args[1], nx.of(grad), Et, Mt, k, tt, ww))[0]
    diff = (got - ref) - (got - ref).mean()      # the step is defined up to the gauge constant
    assert np.abs(diff).max() <= 1e-10 * np.abs(ref - ref.mean()).max()


def test_n_panels_is_finite_for_underflowed_weights(nx):
    """Issue 11 item 2: a weight of 0 (one-hot p, confident q) gave ``log(inf)`` panels."""
    n = K_imp.n_panels(nx.of(np.array([0.0, 1e-300])), nx.of(np.ones(2)), 8)
    assert n == int(np.ceil((np.log(40 * 8) + K_imp.MIN_LOG_WEIGHT) / K_imp.FINE_RULE.width))


# ------------------------------------------------------------------ regressions (issue 11)
def test_importance_path_one_hot_target_confident_draft():
    """Issue 11 item 2: OverflowError in n_panels on main."""
    from solvers.closed_form import optimal_acceptance
    from solvers.optimal_verifier import OptimalVerifier

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ov = OptimalVerifier(method="importance")
        p, q = np.array([0.0, 1.0]), np.array([2.6e-5, 1 - 2.6e-5])
        assert ov.acceptance(p, q, 4) == pytest.approx(optimal_acceptance(p, q, 4), abs=1e-12)
        V = 4096
        p = np.zeros(V)
        p[0] = 1.0
        q = np.full(V, 1e-3 / (V - 1))
        q[0] = 1 - 1e-3
        assert ov.acceptance(p, q, 8) == pytest.approx(optimal_acceptance(p, q, 8), abs=1e-12)
        assert ov.plan(p, q, 8).success
        from gpu_backend.optimal import TorchOptimal

        acc = TorchOptimal().acceptance(torch.tensor(p)[None], torch.tensor(q)[None], 8)
        assert float(acc[0]) == pytest.approx(optimal_acceptance(p, q, 8), abs=1e-12)


def _wide_row(seed: int = 155):
    rng = np.random.default_rng(seed)
    V = int(rng.integers(4, 40))
    p = 10.0 ** rng.uniform(-11, 0, V)
    q = 10.0 ** rng.uniform(-11, 0, V)
    return p / p.sum(), q / q.sum()


def test_rrs_wor_float32_on_masses_1e_11_to_1():
    """Issue 11 item 6: main's float32 path sums were 4.3e-4 off float64 on this row (2.75e-3 on
    the issue's); the kernel computes in float64: only the inputs' rounding remains."""
    from gpu_backend.rrs import TorchRRSWOR

    p, q = _wide_row()
    P32, Q32 = torch.tensor(p, dtype=torch.float32)[None], torch.tensor(q, dtype=torch.float32)[None]
    P64, Q64 = P32.double(), Q32.double()
    ref = TorchRRSWOR().acceptance(P64 / P64.sum(), Q64 / Q64.sum(), 3).item()
    got = TorchRRSWOR().acceptance(P32, Q32, 3).double().item()
    assert abs(got - ref) <= 1e-6


# ------------------------------------------------------------------ float32 (docs/backends.md)
#: measured worst |float32 - float64| of the kernels on Dirichlet(1) rows and 1e-11..1 rows
F32_TOL = {"kseq": 1e-6, "rrs": 1e-6, "rrs_wor": 1e-6}


@pytest.mark.parametrize("k", [2, 4])
def test_float32_inputs(k):
    P, Q = _pairs(8, 50, 21 + k)
    P32, Q32 = torch.tensor(P, dtype=torch.float32), torch.tensor(Q, dtype=torch.float32)
    P64 = P32.double() / P32.double().sum(1, keepdim=True)
    Q64 = Q32.double() / Q32.double().sum(1, keepdim=True)
    # rho* runs in float64 whatever the input: equal to the float64 run on the rounded inputs
    assert torch.equal(K_kseq.kseq_rho(P32, Q32, k), K_kseq.kseq_rho(P32.double(), Q32.double(), k))
    r64 = K_rrs.rrs_acceptance(P64, Q64, k)
    assert float((K_rrs.rrs_acceptance(P32, Q32, k).double() - r64).abs().max()) <= F32_TOL["rrs"]
    w64 = K_rrs.rrs_wor_acceptance(P64[3:], Q64[3:], k)
    assert float((K_rrs.rrs_wor_acceptance(P32[3:], Q32[3:], k) - w64).abs().max()) <= F32_TOL["rrs_wor"]


# ------------------------------------------------------------------ naive inclusion probabilities
@pytest.mark.parametrize("law, k", [("iid", 3), ("hub", 2), ("greedy", 3), ("without_replacement", 3)])
def test_inclusion_probabilities(nx, law, k):
    from ot_coupling.kernels.inclusion import inclusion_probabilities

    _, Q = _pairs(5, 30, 40 + k)
    Q[3, 0] = 0.97                                  # a confident draft (hub cancellation case)
    Q[3] /= Q[3].sum()
    ref = inclusion_probabilities(Q, k, law)
    got = nx.np(inclusion_probabilities(nx.of(Q), k, law))
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL64)
    size = {"iid": None, "hub": 2, "greedy": k, "without_replacement": k}[law]
    if size is not None:                            # E|S| = sum_x P(x in S) for draws without repeats
        np.testing.assert_allclose(ref.sum(1), size, rtol=0, atol=1e-12)


def test_verifiers_never_use_a_non_converged_fit_silently():
    """The result protocol: a fit that missed its tolerance warns (numpy and torch), and the
    output law stays exact (the rule accepts against its own marginal)."""
    from gpu_backend.optimal import TorchOptimal
    from solvers.optimal_verifier import OptimalVerifier

    rng = np.random.default_rng(7)
    p, q = rng.dirichlet(np.ones(300)), rng.dirichlet(np.ones(300))
    ov = OptimalVerifier("importance", max_iter=0, tol=1e-15)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        plan = ov.plan(p, q, 4)
    assert not plan.success and plan.status in (1, 2) and plan.message
    law = ov.conditional_law(p, q, [0, 1, 2, 3])
    assert np.isfinite(law).all() and abs(law.sum() - 1) <= 1e-12
    with pytest.warns(RuntimeWarning, match="did not converge"):
        TorchOptimal(max_iter=0, tol=1e-15).acceptance(torch.tensor(p)[None], torch.tensor(q)[None], 4)


# ------------------------------------------------------------------ speculative, greedy, SpecHub plans
from ot_coupling.draft_laws import get_draft_law, greedy_top  # noqa: E402
from ot_coupling.kernels import plans as K_plans  # noqa: E402

#: worst |float32 - float64| of the plans' conditional laws and of the acceptances, measured on 20
#: seeds of Dirichlet(1) rows with edge rows (float64 run on the float32-rounded inputs): 1.2e-7
PLANS_F32_TOL = 1e-6
PLAN_LAWS = {"speculative": ("iid", 1), "greedy2": ("greedy", 2), "greedy3": ("greedy", 3),
             "hub": ("hub", 2)}


def _edge_plan_rows(V: int = 12, seed: int = 0):
    """Random rows and edge rows: p == q (zero residual), zeros in p and in q, one-hot p, a q of
    mass 1 at one token and 1e-300 elsewhere (hub cancellation), masses 1e-300 in p, a q with
    exactly three tokens of positive mass (two of them 1e-300)."""
    P, Q = _pairs(10, V, seed)
    P[3] = 0.0
    P[3, 2] = 1.0
    Q[4] = 1e-300
    Q[4, 5] = 1.0
    P[5] = 1e-300
    P[5, 0] = 1.0
    Q[6] = 0.0
    Q[6, [1, 4, 7]] = [1.0, 1e-300, 1e-300]
    P[7] = Q[4]                                      # p == the confident q of row 4
    return P, Q


def _kernel_and_drafts(which: str, P, Q, seed: int = 0):
    law, k = PLAN_LAWS[which]
    D = get_draft_law(law).sample_batch(Q, k, np.random.default_rng(seed)).astype(np.int64)
    kernel = {"iid": K_plans.speculative_plan, "greedy": K_plans.greedy_plan, "hub": K_plans.hub_plan}[law]
    return kernel, D, k


@pytest.mark.parametrize("which", sorted(PLAN_LAWS))
@pytest.mark.parametrize("seed", [0, 1])
def test_plans_numpy_equals_backend(nx, which, seed):
    P, Q = _edge_plan_rows(seed=seed)
    kernel, D, k = _kernel_and_drafts(which, P, Q, seed)
    ref = kernel(P, Q, D)
    got = kernel(nx.of(P), nx.of(Q), nx.of(D))
    assert np.array_equal(nx.np(got[0]), ref[0])            # candidates
    assert all((x >= 0).all() for x in ref[1:3]) and all(np.isfinite(x).all() for x in ref)
    for a, b in zip(got[1:], ref[1:]):                        # num, den, residual
        np.testing.assert_allclose(nx.np(a), b, rtol=0, atol=TOL64)
    if which == "speculative":
        acc_ref = K_plans.speculative_acceptance(P, Q)
        acc = K_plans.speculative_acceptance(nx.of(P), nx.of(Q))
    elif which == "hub":
        acc_ref, acc = K_plans.hub_acceptance(P, Q), K_plans.hub_acceptance(nx.of(P), nx.of(Q))
    else:
        top = np.stack([greedy_top(q, k) for q in Q])
        acc_ref = K_plans.greedy_acceptance(P, Q, top)
        acc = K_plans.greedy_acceptance(nx.of(P), nx.of(Q), nx.of(top))
    assert np.isfinite(acc_ref).all()
    np.testing.assert_allclose(nx.np(acc), acc_ref, rtol=0, atol=TOL64)


@pytest.mark.parametrize("which", sorted(PLAN_LAWS))
def test_plans_exact_on_edge_rows(which):
    """Enumeration over the draft law on the edge rows: the numpy selectors (running the kernels)
    output exactly p, and the kernel acceptance equals the enumerated membership acceptance."""
    from ot_coupling.registry import get_selector

    law, k = PLAN_LAWS[which]
    sel = get_selector({"iid": "speculative", "greedy": "greedy", "hub": "spechub"}[law])
    P, Q = _edge_plan_rows()
    for p, q in zip(P, Q):
        p, q = p / p.sum(), q / q.sum()
        np.testing.assert_allclose(sel.output_law(p, q, k), p, rtol=0, atol=1e-12)
        tuples, probs = get_draft_law(law).enumerate(q, k)
        member = sum(w * sum(sel.conditional_law(p, q, t)[np.unique(t)]) for t, w in zip(tuples, probs))
        assert sel.acceptance(p, q, k) == pytest.approx(member, abs=1e-12)


def test_run_plan_zero_residual_falls_back_to_target():
    """gpu_backend.ops.run_plan: every coin fails and the residual has no mass: the race runs on
    the fallback p (never a zero-mass token, never NaN); the first successful coin wins."""
    from gpu_backend.ops import run_plan

    p = torch.tensor([[0.0, 0.3, 0.0, 0.7]] * 64, dtype=torch.float64)
    race = -torch.log(torch.rand(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    cand = torch.tensor([[0, 2]] * 64)
    zeros = torch.zeros(64, 2, dtype=torch.float64)
    tokens = run_plan(cand, zeros, zeros + 1, torch.zeros_like(p), torch.zeros(64), race, p)
    assert set(tokens.tolist()) == {1, 3}
    num = torch.tensor([[0.0, 1.0]] * 64, dtype=torch.float64)        # second coin always succeeds
    assert (run_plan(cand, num, zeros + 1, p, torch.rand(64, 2), race, p) == 2).all()


@pytest.mark.parametrize("which", sorted(PLAN_LAWS))
def test_plans_float32_inputs(which):
    """The conditional laws ``K(y | drafts)`` of float32 plans (coins ``min(1, num/den)`` from the
    float32 ``num, den``) against the float64 run on the same rounded inputs; raw coins
    may differ on branches of probability 0 (p == q: 1.4e-17 / 0 against 0 / 0 for SpecHub's hub)."""
    from ot_coupling.rejection import normalise_rows, plan_law, ratio_coin

    P, Q = _pairs(8, 50, 61)
    P32, Q32 = torch.tensor(P, dtype=torch.float32), torch.tensor(Q, dtype=torch.float32)
    P64, Q64 = P32.double(), Q32.double()
    kernel, D, k = _kernel_and_drafts(which, P, Q)
    laws = []
    for Pt, Qt in ((P32, Q32), (P64, Q64)):
        cand, num, den, res = (x.numpy() for x in kernel(Pt, Qt, torch.from_numpy(D)))
        coins = np.minimum(ratio_coin(num, den), 1.0)
        res = normalise_rows(np.maximum(res.astype(np.float64), 0.0), P64.numpy())
        laws.append(np.stack([plan_law(P.shape[1], c, a, r) for c, a, r in zip(cand, coins, res)]))
    assert np.abs(laws[0] - laws[1]).max() <= PLANS_F32_TOL
    top = torch.from_numpy(np.stack([greedy_top(q, 3) for q in Q]))
    for acc in (K_plans.speculative_acceptance, K_plans.hub_acceptance,
                lambda a, b: K_plans.greedy_acceptance(a, b, top)):
        assert float((acc(P32, Q32).double() - acc(P64, Q64)).abs().max()) <= PLANS_F32_TOL


def test_stable_sort_rows_is_the_stable_order(nx):
    """The fast host sort (unstable when every key of a row is distinct) gives exactly the stable
    order and the sorted keys, also on rows with ties (``inf`` keys of ``q = 0``, repeated values)."""
    from ot_coupling.kernels._array import array_namespace, stable_sort_rows

    rng = np.random.default_rng(3)
    distinct = rng.random((4, 1000))
    tied = np.round(rng.random((4, 1000)) * 20) / 20
    tied[:, ::7] = np.inf
    for x in (distinct, tied, np.concatenate([distinct, tied]), distinct[:1], tied[:1]):
        xt = nx.of(x)
        order, xs = stable_sort_rows(array_namespace(xt), xt)
        expect = np.argsort(x, axis=1, kind="stable")
        np.testing.assert_array_equal(nx.np(order), expect)
        np.testing.assert_array_equal(nx.np(xs), np.take_along_axis(x, expect, axis=1))


def test_stable_sort_rows_packed_sort_falls_back_where_it_must(nx):
    """Long rows go through the packed (key bits, column) sort: ties (``p = 0`` and ``q = 0`` keys,
    repeated ratios) come out in column order, and rows it cannot order (keys equal in their high
    bits, negative keys, ``-0`` next to ``+0``, NaN) are sorted again stably, alone in a batch."""
    from ot_coupling.kernels._array import array_namespace, stable_sort_rows

    rng = np.random.default_rng(4)
    V = 5000
    distinct = rng.random((2, V)) * 10.0 ** rng.uniform(-300, 0, (2, V))
    tied = np.round(rng.random((2, V)) * 20) / 20
    tied[:, ::7] = np.inf
    tied[:, 1::9] = 0.0
    near = 1.0 + rng.integers(0, 4, (2, V)) * 2.0 ** -50      # distinct only in the low 2 bits
    signed = rng.standard_normal((2, V))
    signed[:, ::5], signed[:, 1::5] = -0.0, 0.0
    rows = [distinct, tied, near, np.concatenate([distinct, near, tied]), distinct[:1], near[:1]]
    if nx.name != "torch-cuda":                              # the host sort's order of -0, +0 and NaN
        nan = rng.random((2, V))
        nan[:, ::11] = np.nan
        rows += [signed, nan, np.concatenate([distinct, signed])]
    for x in rows:
        for dtype in (np.float64, np.float32):
            xd = x.astype(dtype)
            xt = nx.of(xd)
            order, xs = stable_sort_rows(array_namespace(xt), xt)
            expect = np.argsort(xd, axis=1, kind="stable")
            np.testing.assert_array_equal(nx.np(order), expect)
            np.testing.assert_array_equal(nx.np(xs), np.take_along_axis(xd, expect, axis=1))
