"""Recursive rejection sampling (RRS) against an exact rational oracle (issue 11).

The oracle runs SpecInfer's explicit chain (Miao et al., ASPLOS 2024, Algorithm 2; without
replacement: Jeon et al., arXiv 2402.14160) in :class:`fractions.Fraction` arithmetic: ``p_1 = p``,
``q_1 = q``; draft ``X_i`` is accepted with probability ``min(1, p_i(X_i) / q_i(X_i))``; on
rejection ``p_{i+1} = norm((p_i - q_i)^+)`` and, without replacement, ``q_{i+1} = norm(q_i`` with
``X_i`` removed``)``; after ``k`` rejections ``Y ~ p_{k+1}``. It shares no code with the kernel
(which uses the one-parameter form of docs/theory/token_verifiers.md) and treats the float inputs
as exact rationals, renormalised exactly.

Checked on the hard corners (one-hot ``p`` or ``q``, masses from 1e-300 to 1, exact zeros, float32
inputs): the exact acceptance (``rrs_wor_acceptance``, ``rrs_acceptance``) to 1e-15 absolute, and
the coins of ``rrs_plan`` through ``conditional_law``: the joint law of (drafts, output) to 1e-15
in total variation.
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from itertools import permutations, product

import numpy as np
import pytest

from ot_coupling.draft_laws import enumerate_drafts
from ot_coupling.kernels.rrs import rrs_acceptance as kernel_rrs_acceptance
from ot_coupling.kernels.rrs import rrs_plan
from ot_coupling.kernels.rrs import rrs_wor_acceptance as kernel_rrs_wor_acceptance
from ot_coupling.registry import get_selector

TOL = 1e-15


# ----------------------------------------------------------------------------- exact oracle
def exact(x) -> list[Fraction]:
    """The float vector ``x`` as exact rationals, renormalised exactly."""
    v = [Fraction(float(a)) for a in np.asarray(x, dtype=np.float64)]
    s = sum(v)
    return [a / s for a in v]


def _norm(v: list[Fraction]) -> list[Fraction]:
    s = sum(v)
    return [a / s for a in v]


def exact_chain_law(p, q, drafts, wor: bool) -> list[Fraction]:
    """``K(y | drafts)`` of RRS by the explicit chain, exactly (``p, q`` rational lists)."""
    pi, qi = list(p), list(q)
    law = [Fraction(0)] * len(p)
    survive = Fraction(1)
    for i, x in enumerate(drafts):
        a = min(Fraction(1), pi[x] / qi[x])
        law[x] += survive * a
        survive *= 1 - a
        if survive == 0:
            return law
        pi = _norm([max(u - v, Fraction(0)) for u, v in zip(pi, qi)])
        if wor and i < len(drafts) - 1:
            qi = _norm([Fraction(0) if j == x else v for j, v in enumerate(qi)])
    return [a + survive * b for a, b in zip(law, pi)]


def exact_tuples(q, k: int, wor: bool):
    """Every ordered draft tuple of positive probability with its exact probability."""
    support = [i for i, v in enumerate(q) if v > 0]
    for t in (permutations(support, k) if wor else product(support, repeat=k)):
        prob, unseen = Fraction(1), Fraction(1)
        for x in t:
            prob *= q[x] / unseen if wor else q[x]
            if wor:
                unseen -= q[x]
        yield t, prob


def exact_acceptance(p, q, k: int, wor: bool) -> Fraction:
    """``P(Y in drafts)`` by enumerating draft tuples through :func:`exact_chain_law`."""
    acc = Fraction(0)
    for t, prob in exact_tuples(q, k, wor):
        law = exact_chain_law(p, q, t, wor)
        acc += prob * sum(law[y] for y in set(t))
    return acc


def exact_acceptance_by_histories(p, q, k: int, wor: bool) -> Fraction:
    """The same acceptance summed over rejection histories only (cheaper for larger ``V, k``):
    ``sum_i P(reach step i) sum_x min(p_i, q_i)``."""
    def rec(pi, qi, i):
        here = sum(min(u, v) for u, v in zip(pi, qi))
        if i == k or here == 1:
            return here
        nxt = _norm([max(u - v, Fraction(0)) for u, v in zip(pi, qi)])
        if not wor:
            return here + (1 - here) * rec(nxt, qi, i + 1)
        total = here
        for x, v in enumerate(qi):
            reject = v - min(pi[x], v)
            if reject > 0:
                total += reject * rec(nxt, _norm([Fraction(0) if j == x else w for j, w in enumerate(qi)]), i + 1)
        return total
    return rec(list(p), list(q), 1)


def _err(value: float, ref: Fraction) -> float:
    return float(abs(Fraction(float(value)) - ref))


# ----------------------------------------------------------------------------- oracle self-checks
def test_oracle_output_law_is_p_and_one_hot_target_acceptance():
    """The oracle is lossless (output law == p exactly) and, for ``p = e_0``, its acceptance is
    ``P(0 is drafted)`` (every lossless rule must then output 0)."""
    p = exact([0.2, 0.5, 0.3, 0.0])
    q = exact([0.4, 0.1, 0.2, 0.3])
    for wor in (False, True):
        out = [Fraction(0)] * 4
        for t, prob in exact_tuples(q, 3, wor):
            out = [a + prob * b for a, b in zip(out, exact_chain_law(p, q, t, wor))]
        assert out == p
        e0 = exact([1, 0, 0, 0])
        drafted = sum(prob for t, prob in exact_tuples(q, 3, wor) if 0 in t)
        assert exact_acceptance(e0, q, 3, wor) == drafted
        assert exact_acceptance_by_histories(p, q, 3, wor) == exact_acceptance(p, q, 3, wor)


# ----------------------------------------------------------------------------- regressions
def test_rrs_wor_acceptance_issue11_one_hot_target():
    """Issue 11: ``p = e_0``, ``q = norm(5e-8, .5, .5, 5e-13)``, ``k = 3`` was 1.5e-9 low: the
    last level's ``1 / (q(unseen) - q(x))`` cancelled when ``x`` held almost all the unseen mass."""
    p = np.array([1.0, 0.0, 0.0, 0.0])
    q = np.array([4.99999975e-08, 4.99999975e-01, 4.99999975e-01, 4.99999975e-13])
    q = q / q.sum()
    ref = exact_acceptance(exact(p), exact(q), 3, True)
    tuples, probs = enumerate_drafts(q, 3, "without_replacement")
    assert float(ref) == pytest.approx(probs[(tuples == 0).any(axis=1)].sum(), abs=1e-15)
    sel = get_selector("rrs_wor")
    assert _err(sel.acceptance(p, q, 3), ref) <= TOL
    assert _err(sel.enumerate(p, q, 3)[1], ref) <= TOL


def test_rrs_wor_acceptance_dominant_unseen_token():
    """The same cancellation made the acceptance 1.0 instead of 1.6e-57: after token 0 (q = 1 -
    1e-177) is rejected, ``q(unseen) - q(0)`` rounded to 0."""
    p = np.array([0.0, 1.0, 1.584214665961335e-57])
    q = np.array([1.0, 1.025155494794839e-285, 9.086248998016093e-178])
    ref = exact_acceptance(exact(p), exact(q), 2, True)
    assert float(ref) == pytest.approx(1.584214665961335e-57, rel=1e-12)
    assert _err(get_selector("rrs_wor").acceptance(p, q, 2), ref) <= TOL


@pytest.mark.parametrize("name", ["rrs", "rrs_wor"])
def test_rrs_plan_residual_below_an_ulp_of_p(name):
    """``p(2) = 1, q(2) = 1 - 2^-35``: after two rejections the exact residual is ~``e_2`` (mass
    2^-70 against 1e-200 on token 1). The former residual ``(p - t_3 q)^+`` with
    ``t_3 q(2) = 1 - 2^-70`` rounded to 0 and the conditional law put all mass on token 1."""
    a = 2.0 ** -35
    p = np.array([0.0, 1e-200, 1.0, 0.0])
    q = np.array([a, 0.0, 1.0 - a - 2.0 ** -40, 2.0 ** -40])
    drafts = (0, 0, 0) if name == "rrs" else (0, 3, 2)
    wor = name == "rrs_wor"
    ref = exact_chain_law(exact(p), exact(q), drafts, wor)
    assert float(ref[2]) > 0.99
    law = get_selector(name).conditional_law(p, q, np.array(drafts))
    assert max(_err(g, e) for g, e in zip(law, ref)) <= TOL


# ----------------------------------------------------------------------------- corner sweep
def _corner(rng: np.random.Generator, V: int) -> np.ndarray:
    """One-hot, or masses drawn from {0, 1, 10^U(-300, 0), U(1e-3, 1), 10^U(-20, 0)}, normalised."""
    if rng.random() < 0.25:
        x = np.zeros(V)
        x[rng.integers(V)] = 1.0
        return x
    pick = rng.integers(5, size=V)
    x = np.select([pick == 0, pick == 1, pick == 2, pick == 3],
                  [0.0, 1.0, 10.0 ** rng.uniform(-300, 0, V), rng.uniform(1e-3, 1, V)],
                  10.0 ** rng.uniform(-20, 0, V))
    if x.sum() == 0:
        x[rng.integers(V)] = 1.0
    return x / x.sum()


def corner_cases(seed: int, n: int, v_max: int = 5):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        V = int(rng.integers(2, v_max + 1))
        k = int(rng.integers(2, V + 1))
        p, q = _corner(rng, V), _corner(rng, V)
        if (q > 0).sum() < k:
            q[np.argsort(q)[:k]] += rng.uniform(1e-3, 1, k)
            q /= q.sum()
        yield p, q, k


@pytest.mark.parametrize("seed", range(4))
def test_rrs_acceptance_on_corners(seed):
    """``rrs_wor`` and ``rrs`` acceptance == the rational oracle to 1e-15 on 15 corner cases."""
    for p, q, k in corner_cases(seed, 15):
        pe, qe = exact(p), exact(q)
        for name, fn, wor in (("rrs_wor", kernel_rrs_wor_acceptance, True),
                              ("rrs", kernel_rrs_acceptance, False)):
            ref = exact_acceptance_by_histories(pe, qe, k, wor)
            got = fn(np.array([float(v) for v in pe])[None], np.array([float(v) for v in qe])[None], k)[0]
            assert _err(got, ref) <= TOL, (name, p.tolist(), q.tolist(), k, float(ref))


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("name", ["rrs", "rrs_wor"])
def test_rrs_conditional_law_on_corners(name, seed):
    """``conditional_law`` (the coins of ``rrs_plan``) over every draft tuple: the joint law of
    (drafts, output), ``sum_t Q(t) TV(K(.|t), K_exact(.|t))``, within 1e-15; the enumerated
    acceptance within 1e-15 of the exact one."""
    sel = get_selector(name)
    wor = name == "rrs_wor"
    for p, q, k in corner_cases(100 + seed, 8, v_max=4):
        pe, qe = exact(p), exact(q)
        pf, qf = np.array([float(v) for v in pe]), np.array([float(v) for v in qe])
        joint = Fraction(0)
        for t, prob in exact_tuples(qe, k, wor):
            law = sel.conditional_law(pf, qf, np.array(t))
            ref = exact_chain_law(pe, qe, t, wor)
            joint += prob * sum(abs(Fraction(float(g)) - e) for g, e in zip(law, ref)) / 2
        assert float(joint) <= TOL, (p.tolist(), q.tolist(), k)
        assert _err(sel.enumerate(pf, qf, k)[1], exact_acceptance(pe, qe, k, wor)) <= TOL


def test_rrs_wor_acceptance_larger_k():
    """``k`` = 5, 6 on V = 6, 7 (the history recursion of the kernel, several levels deep)."""
    rng = np.random.default_rng(7)
    for V, k in ((6, 5), (7, 6)):
        p = _corner(rng, V)
        q = rng.uniform(1e-3, 1, V)
        q[0] = 1e-250
        q /= q.sum()
        ref = exact_acceptance_by_histories(exact(p), exact(q), k, True)
        got = get_selector("rrs_wor").acceptance(p, q, k)
        assert _err(got, ref) <= TOL, (p.tolist(), q.tolist(), k)


def test_rrs_wor_acceptance_k64_identical_laws():
    """``k = 64`` where the path budget allows it: ``p == q`` accepts the first draft surely."""
    rng = np.random.default_rng(3)
    q = rng.uniform(1e-3, 1, 64)
    q[:5] = 1e-300
    q /= q.sum()
    assert get_selector("rrs_wor").acceptance(q, q, 64) == pytest.approx(1.0, abs=TOL)


def test_rrs_wor_acceptance_float32_rows():
    """float32 rows (sums 1 +- 6e-8) give the exact acceptance of the rows renormalised exactly:
    the kernel renormalises in float64 (it started from ``Z(0) = 1``, 2.5e-8 off before)."""
    rng = np.random.default_rng(11)
    for _ in range(5):
        p = rng.dirichlet(np.full(6, 0.3)).astype(np.float32)
        q = np.maximum(rng.dirichlet(np.full(6, 0.5)), 1e-3).astype(np.float32)
        q /= q.sum()
        ref = exact_acceptance_by_histories(exact(p), exact(q), 3, True)
        assert _err(kernel_rrs_wor_acceptance(p[None], q[None], 3)[0], ref) <= TOL


def test_rrs_acceptance_float32_rows_never_negative():
    """Fuzz finding (``long`` profile): torch ``rrs`` on float32 rows ``p = (0, 2/3, 1/3)``,
    ``q = e_0``, ``k = 1`` returned ``-2.98e-8`` (``1 - Z`` with ``sum p = 1 + 3e-8``); exact: 0."""
    torch = pytest.importorskip("torch")
    from gpu_backend.registry import get_selector as get_torch_selector
    from gpu_backend.rrs import rrs_wor_acceptance
    from ot_coupling.kernels.rrs import rrs_acceptance

    def rrs_wr_acceptance(p, q, k):  # the float64 path of TorchRRS.acceptance
        return rrs_acceptance(p.to(torch.float64), q.to(torch.float64), k)

    p = torch.tensor([[0.0, 2 / 3, 1 / 3]], dtype=torch.float32)
    q = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float32)
    for k in (1, 3):
        assert float(rrs_wr_acceptance(p, q, k)[0]) == 0.0
        assert float(get_torch_selector("rrs").acceptance(p, q, k)[0]) == 0.0
    rng = np.random.default_rng(5)
    for _ in range(5):
        p32 = rng.dirichlet(np.full(5, 0.3)).astype(np.float32)
        q32 = np.maximum(rng.dirichlet(np.full(5, 0.5)), 1e-3).astype(np.float32)
        for k in (1, 2, 3):
            pt, qt = torch.from_numpy(p32)[None], torch.from_numpy(q32)[None]
            for fn, wor in ((rrs_wr_acceptance, False), (rrs_wor_acceptance, True)):
                ref = exact_acceptance_by_histories(exact(p32), exact(q32), k, wor)
                assert _err(float(fn(pt, qt, k)[0]), ref) <= TOL


SUBNORMAL_CASES = [
    # acceptance 4.5e-13 instead of 0.9995: c = 1 / q(unseen) overflowed for a subnormal q(unseen)
    ([0.0, 0.0, 1.0], [1.0, 5e-324, 1e-320], 2),
    # 0.949 instead of 1: 1 / q(unseen) was clipped at the smallest normal 2.2e-308
    ([0.25, 0.25, 0.5, 0.0], [0.5, 0.25, 2e-308, 0.25], 4),
    ([1.0, 0.0, 0.0], [5e-324, 0.5, 0.5], 3),
    ([0.0, 1.0, 0.0, 0.0], [1.0, 1e-310, 1e-300, 5e-324], 3),
    ([0.0, 0.0, 0.5, 0.5], [1.0, 5e-324, 1e-323, 1.5e-323], 3),
    ([1e-320, 0.0, 1.0, 0.0], [1.0, 5e-324, 1e-323, 0.0], 2),
]


@pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")  # ratio_coin
@pytest.mark.parametrize(("p", "q", "k"), SUBNORMAL_CASES)
def test_rrs_subnormal_masses(p, q, k):
    """Subnormal masses are valid inputs (docs/numerics.md): acceptance, enumerated acceptance and
    the joint law of (drafts, output) exact to 1e-15, without RuntimeWarnings from the kernel."""
    p, q = np.array(p), np.array(q)
    pe, qe = exact(p), exact(q)
    for name in ("rrs", "rrs_wor"):
        sel = get_selector(name)
        wor = name == "rrs_wor"
        ref = exact_acceptance_by_histories(pe, qe, k, wor)
        assert _err(sel.acceptance(p, q, k), ref) <= TOL, name
        assert _err(sel.enumerate(p, q, k)[1], ref) <= TOL, name
        joint = Fraction(0)
        for t, prob in exact_tuples(qe, k, wor):
            law = sel.conditional_law(p, q, np.array(t))
            joint += prob * sum(abs(Fraction(float(g)) - e) for g, e in zip(law, exact_chain_law(pe, qe, t, wor)))
        assert float(joint) <= TOL, name
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        kernel_rrs_wor_acceptance(p[None], q[None], k)
        rrs_plan(p[None], q[None], np.arange(k)[None] if (q[:k] > 0).all() else np.argsort(-q)[None, :k], True)
