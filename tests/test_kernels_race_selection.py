"""The race kernel (Poisson-binomial law, race integral, shared-Gumbel acceptance) and the
selection-law kernel on every backend (backend-fixture pattern of tests/test_kernels.py).

Float64: every backend equals the numpy run to 1e-12 and an independent oracle (enumeration,
exact rational inclusion-exclusion, brute force over subsets). Float32 inputs: the tolerances
``TOL32_*`` below (measured; docs/backends.md).
"""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations, product

import numpy as np
import pytest

from ot_coupling.kernels import race as K_race
from ot_coupling.kernels import selection as K_sel

torch = pytest.importorskip("torch")

from backends import Backend  # noqa: E402

TOL64 = 1e-12
#: float32 inputs, against the float64 numpy result: largest errors measured 4e-8 (race integral,
#: acceptance) and 6.5e-7 (selection law: ``alpha``, L1 of ``r``), numpy and torch; 10x margin
TOL32_RACE = 1e-6
TOL32_SEL = 1e-5


@pytest.fixture(params=["numpy", "torch-cpu", "torch-cuda"])
def nx(request, one_torch_thread):
    if request.param == "torch-cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA")
    return Backend(request.param)


def _rows(B: int, V: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random rows plus the extreme ones: p == q, one-hot p, one-hot q, zeros in p and q, masses
    down to 1e-300."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(V, 0.5), size=B)
    Q = rng.dirichlet(np.full(V, 0.5), size=B)
    P[0] = Q[0]
    P[1] = 0.0
    P[1, 0] = 1.0
    Q[2] = 0.0
    Q[2, V - 1] = 1.0
    P[3, : V // 2] = 0.0
    Q[3, V // 2:] = 0.0
    for row in (P[4], Q[5]):
        row[:] = np.logspace(-300, 0, V)[rng.permutation(V)]
    P[6, :2] = [1e-300, 1e-200]
    Q[6, -2:] = [1e-300, 1e-150]
    P, Q = P / P.sum(1, keepdims=True), Q / Q.sum(1, keepdims=True)
    return P, Q


# ----------------------------------------------------------------------------- Poisson-binomial
def _enumerate_below(probs: np.ndarray, k: int) -> float:
    total = 0.0
    for bits in product((0, 1), repeat=probs.size):
        if sum(bits) <= k - 1:
            total += float(np.prod([pr if b else 1 - pr for pr, b in zip(probs, bits)]))
    return total


def _fraction_below(probs, k: int) -> Fraction:
    """Exact truncated Poisson-binomial DP in rationals (independent of the kernel's tree)."""
    dist = [Fraction(1)] + [Fraction(0)] * (k - 1)
    for pr in probs:
        pr = Fraction(float(pr))
        dist = [dist[i] * (1 - pr) + (dist[i - 1] * pr if i else 0) for i in range(k)]
    return sum(dist, Fraction(0))


@pytest.mark.parametrize("M, k", [(0, 2), (1, 1), (1, 3), (2, 2), (5, 2), (7, 4), (9, 9), (10, 3), (6, 64)])
def test_poisson_binomial_below_against_enumeration(nx, M, k):
    rng = np.random.default_rng(M * 100 + k)
    probs = rng.random((4, M))
    if M:
        probs[1, 0], probs[2, -1], probs[3, 0] = 0.0, 1.0, 1e-300
    got = nx.np(K_race.poisson_binomial_below(nx.of(probs), k))
    want = np.array([_enumerate_below(row, k) for row in probs])
    assert np.abs(got - want).max() <= 1e-14


def test_poisson_binomial_below_large_k_against_exact_rationals(nx):
    rng = np.random.default_rng(7)
    probs = rng.random((2, 70))
    probs[1, ::3] = 1.0
    for k in (2, 17, 64):
        got = nx.np(K_race.poisson_binomial_below(nx.of(probs), k))
        want = [float(_fraction_below(row, k)) for row in probs]
        assert np.abs(got - want).max() <= 1e-13, k


# ----------------------------------------------------------------------------- race integral
def _race_exact(rates, k: int) -> Fraction:
    """``int_0^inf e^{-w} P(N(w) <= k-1) dw`` by inclusion-exclusion, in rationals: with ``A`` the
    set of clocks that rang, ``prod_{z in A} (1 - e^{-c_z w}) = sum_{B subset A} (-1)^{|B|}
    e^{-c(B) w}``, so the integral is ``sum_{|A| < k} sum_{B subset A} (-1)^{|B|} / (1 + c(B) +
    c(A^c))``."""
    c = [Fraction(float(x)) for x in rates]
    m = len(c)
    total = Fraction(0)
    for size in range(min(k, m + 1)):
        for A in combinations(range(m), size):
            rest = sum((c[z] for z in range(m) if z not in A), Fraction(0))
            for bsize in range(size + 1):
                for B in combinations(A, bsize):
                    total += (-1) ** bsize / (1 + rest + sum((c[z] for z in B), Fraction(0)))
    return total


def test_race_integral_against_exact_rationals(nx):
    rng = np.random.default_rng(3)
    rates = rng.exponential(size=(6, 6)) * rng.choice([1e-3, 1.0, 30.0], size=(6, 6))
    rates[1, :3] = 0.0              # fewer positive rates
    rates[2, :5] = 0.0              # one positive rate: exactly 1 for k >= 2
    rates[3, 0] = 1e-300
    for k in (1, 2, 3, 5):
        got = nx.np(K_race.race_integral(nx.of(rates), k))
        want = np.array([float(_race_exact(row, k)) for row in rates])
        assert np.abs(got - want).max() <= 1e-13, k
        assert got[2] == 1.0 or k == 1


@pytest.mark.parametrize("k", [2, 8, 64])
def test_race_integral_backends_agree_and_chunking_is_invisible(nx, k):
    rng = np.random.default_rng(k)
    rates = rng.exponential(size=(3, 5, 80)) * (rng.random((3, 5, 80)) < 0.7)
    rates[0, 0] = 0.0
    rates[1, 1, :10] = 1e-300
    rates[2, 2] *= 1e6
    ref = K_race.race_integral(rates, k)
    assert ref.shape == (3, 5) and np.all((ref >= 0) & (ref <= 1 + 1e-12))
    for max_entries in (None, 1000, 10**8):      # one node per chunk up to everything at once
        got = nx.np(K_race.race_integral(nx.of(rates), k, max_entries=max_entries))
        assert np.abs(got - ref).max() <= TOL64


# ----------------------------------------------------------------------------- Gumbel acceptance
def _gumbel_exact(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """``sum_S sum_{y in S} P(Y = y, S)`` over the draft sets, each term in exact rationals by the
    set-conditional formula of :mod:`ot_coupling.gumbel` (a different route: breakpoints in the
    scaled time, no quadrature)."""
    from ot_coupling.gumbel import _joint

    support = [int(x) for x in np.flatnonzero(q > 0)]
    total = Fraction(0)
    for S in combinations(support, k):
        joint = _joint(p, q, S, exact=True)
        total += sum((joint[y] for y in S), Fraction(0))
    return float(total)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_gumbel_acceptance_against_exact_set_enumeration(nx, k):
    P, Q = _rows(7, 6, seed=k)
    got = nx.np(K_race.gumbel_acceptance(nx.of(P), nx.of(Q), k))
    for b in range(P.shape[0]):
        if (Q[b] > 0).sum() >= k and P[b].min() > 1e-100 and Q[b].min() > 1e-100:
            assert abs(got[b] - _gumbel_exact(P[b], Q[b], k)) <= 1e-12, b
    if k == 1:   # closed form sum_x 1 / sum_j max(p_j / p_x, q_j / q_x) on rows without zeros
        for b in np.flatnonzero((P > 0).all(1) & (Q > 0).all(1)):
            p, q = P[b], Q[b]
            closed = sum(1.0 / np.maximum(p / p[x], q / q[x]).sum() for x in range(p.size))
            assert abs(got[b] - closed) <= 1e-14


@pytest.mark.parametrize("k", [1, 2, 4, 64])
def test_gumbel_acceptance_backends_agree(nx, k):
    P, Q = _rows(8, 70, seed=10 + k)
    ref = K_race.gumbel_acceptance(P, Q, k)
    got = nx.np(K_race.gumbel_acceptance(nx.of(P), nx.of(Q), k))
    assert np.abs(got - ref).max() <= TOL64
    assert np.all((ref >= 0) & (ref <= 1 + 1e-12))
    assert ref[0] == pytest.approx(1.0, abs=1e-12)           # p == q: the coupling always agrees
    if k == 64:
        assert np.all(ref >= K_race.gumbel_acceptance(P, Q, 4) - 1e-12)


def test_race_kernels_float32(nx):
    P, Q = _rows(8, 40, seed=5)
    P[4:6], Q[4:6] = P[6:8], Q[6:8]       # float32 cannot hold 1e-300: keep the rows it can
    for k in (1, 3):
        ref = K_race.gumbel_acceptance(P, Q, k)
        got = K_race.gumbel_acceptance(nx.of(P, np.float32), nx.of(Q, np.float32), k)
        assert got.dtype == nx.of(np.zeros(1, np.float32)).dtype
        assert np.abs(nx.np(got) - ref).max() <= TOL32_RACE
    rates = np.random.default_rng(1).exponential(size=(4, 50))
    got = K_race.race_integral(nx.of(rates, np.float32), 4)
    assert np.abs(nx.np(got) - K_race.race_integral(rates, 4)).max() <= TOL32_RACE


# ----------------------------------------------------------------------------- selection law
def _unsorted(scan, name):
    inv = np.argsort(Backend.np(scan.order), axis=1)
    return np.take_along_axis(Backend.np(getattr(scan, name)), inv, axis=1)


@pytest.mark.parametrize("k", [1, 2, 5, 64])
def test_selection_scan_backends_agree(nx, k):
    P, Q = _rows(9, 300, seed=20 + k)
    ref = K_sel.selection_scan(P, Q, k)
    got = K_sel.selection_scan(nx.of(P), nx.of(Q), k)
    assert np.array_equal(nx.np(got.order), ref.order) and np.array_equal(nx.np(got.cut), ref.cut)
    for name in ("alpha", "ps", "qs", "ratio", "r", "theta_b", "q_cut"):
        assert np.abs(nx.np(getattr(got, name)) - getattr(ref, name)).max() <= TOL64, name
    th_a = nx.np(got.theta_a)
    assert np.array_equal(np.isinf(th_a), np.isinf(ref.theta_a))
    fin = np.isfinite(ref.theta_a)
    assert np.allclose(th_a[fin], ref.theta_a[fin], rtol=1e-12, atol=TOL64)
    r = _unsorted(ref, "r")
    assert np.isfinite(r).all() and (r >= 0).all()
    assert np.allclose(r.sum(1), 1.0, atol=1e-12)
    assert np.allclose(np.minimum(r, P).sum(1), ref.alpha, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_selection_scan_against_brute_force(nx, k):
    """``alpha`` is the minimum of ``p(H) + 1 - q(H)^k`` over all ``2^V`` subsets, the law reaches
    it, and it is feasible: ``r(A) <= 1 - (1 - q(A))^k`` for every subset ``A``."""
    P, Q = _rows(8, 8, seed=30 + k)
    scan = K_sel.selection_scan(nx.of(P), nx.of(Q), k)
    alpha = nx.np(scan.alpha)
    inv = np.argsort(nx.np(scan.order), axis=1)
    r = np.take_along_axis(nx.np(scan.r), inv, axis=1)
    V = P.shape[1]
    subsets = np.array(list(product((0, 1), repeat=V)), dtype=bool)
    for b in range(P.shape[0]):
        pH, qH = subsets @ P[b], subsets @ Q[b]
        assert alpha[b] == pytest.approx(np.min(pH + 1 - qH ** k), abs=1e-12)
        assert np.minimum(r[b], P[b]).sum() == pytest.approx(alpha[b], abs=1e-12)
        assert np.all(subsets @ r[b] <= 1 - (1 - qH) ** k + 1e-12)
        assert r[b].sum() == pytest.approx(1.0, abs=1e-12)


def test_selection_scan_matches_the_numpy_cut(nx):
    """The cut and ``alpha`` are those of :func:`solvers.closed_form.optimal_cut` (same sums)."""
    from solvers.closed_form import optimal_cut

    P, Q = _rows(8, 50, seed=41)
    scan = K_sel.selection_scan(nx.of(P), nx.of(Q), 4)
    for b in range(P.shape[0]):
        cut = optimal_cut(P[b], Q[b], 4)
        assert int(nx.np(scan.cut)[b]) == cut.cut.size
        assert abs(float(nx.np(scan.alpha)[b]) - cut.value) <= TOL64


def test_selection_scan_one_row_is_its_row_of_a_batch(nx):
    """Every field of one row's scan (one cut: the masks of ``H`` drop out; numpy: scratch buffers)
    is bitwise that row of the batch's scan (cuts differ: the masked path), for rows with ``q = 0``
    and ``p = 0`` tokens and tied ratios too; ``cut`` and ``alpha`` are bitwise those of the
    closed form."""
    from solvers.closed_form import _cut_iid

    P, Q = _rows(8, 20000, seed=43)
    P[7] = np.round(P[7] * 20000 * 3) + 1.0                  # tied ratios
    Q[7] = np.round(Q[7] * 20000 * 3) + 1.0
    P[7], Q[7] = P[7] / P[7].sum(), Q[7] / Q[7].sum()
    fields = ("order", "cut", "alpha", "ps", "qs", "ratio", "r", "theta_a", "theta_b", "q_cut")
    batch = K_sel.selection_scan(nx.of(P), nx.of(Q), 8)
    for b in range(P.shape[0]):
        row = K_sel.selection_scan(nx.of(P[b:b + 1]), nx.of(Q[b:b + 1]), 8)
        for name in fields:
            got, want = nx.np(getattr(row, name))[0], nx.np(getattr(batch, name))[b]
            assert got.tobytes() == want.tobytes(), (b, name)
        if nx.name == "numpy":
            cut = _cut_iid(P[b], Q[b], 8)
            assert int(row.cut[0]) == cut.cut.size and float(row.alpha[0]) == cut.value


def test_selection_scan_results_outlive_the_next_call():
    """The numpy scan keeps its intermediates in per-thread scratch buffers: no result is one of
    them (a second call leaves the first call's arrays as they were)."""
    P, Q = _rows(8, 20000, seed=44)
    first = K_sel.selection_scan(P[4:5], Q[4:5], 3)
    saved = [None if x is None else np.array(x, copy=True) for x in first]
    K_sel.selection_scan(P[5:6], Q[5:6], 5)
    K_sel.selection_scan(P[3:4], Q[3:4], 2, marginal=False)
    for x, y in zip(first, saved):
        assert np.array_equal(x, y)


def test_selection_scan_threads_do_not_share_scratch():
    """Scans running in several threads at once (numpy releases the GIL inside ufuncs) give the
    serial results bitwise: the scratch buffers are per thread."""
    from concurrent.futures import ThreadPoolExecutor

    P, Q = _rows(8, 20000, seed=45)
    serial = [K_sel.selection_scan(P[b:b + 1], Q[b:b + 1], 4) for b in range(8)]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            threaded = list(pool.map(lambda b: K_sel.selection_scan(P[b:b + 1], Q[b:b + 1], 4), range(8)))
            for one, two in zip(serial, threaded):
                for x, y in zip(one, two):
                    assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def test_selection_scan_float32(nx):
    P, Q = _rows(8, 200, seed=50)
    P[4:7], Q[4:7] = P[7], Q[7]
    for k in (1, 4):
        ref = K_sel.selection_scan(P, Q, k)
        got = K_sel.selection_scan(nx.of(P, np.float32), nx.of(Q, np.float32), k)
        assert np.abs(nx.np(got.alpha) - ref.alpha).max() <= TOL32_SEL
        r_ref, r_got = _unsorted(ref, "r"), _unsorted(got, "r")
        assert np.abs(r_got - r_ref).sum(1).max() <= TOL32_SEL


# ----------------------------------------------------------------------------- callers
def test_callers_use_the_kernels(one_torch_thread):
    """numpy and torch selectors give the kernels' numbers (no second implementation left)."""
    import gpu_backend.ops as ops
    from gpu_backend.gumbel import gumbel_acceptance as torch_gumbel
    from ot_coupling.gumbel import gumbel_acceptance as np_gumbel
    from solvers.selection_law import selection_law

    assert not hasattr(ops, "race_integral") and not hasattr(ops, "poisson_binomial_below")
    P, Q = _rows(8, 30, seed=60)
    for k in (1, 3):
        t = torch_gumbel(torch.from_numpy(P), torch.from_numpy(Q), k).numpy()
        n = np.array([np_gumbel(P[b], Q[b], k) for b in range(P.shape[0])])
        assert np.abs(t - n).max() <= TOL64
    law = selection_law(P, Q, 3)
    scan = K_sel.selection_scan(P, Q, 3)
    assert np.abs(law.r - _unsorted(scan, "r")).max() <= TOL64      # (rows renormalised by validation)
    assert np.abs(law.alpha - scan.alpha).max() <= TOL64
