r"""Closed forms of the optimal multi-draft acceptance (min-cut over prefixes sorted by ``p/q``).

Notation: ``p`` = target, ``q`` = draft (docs/theory/membership_ot.md#setting-and-notation), ``k`` drafts, ``S(X)`` = the set
of distinct drafted tokens.

The min-cut formula
-------------------
For any law ``Q`` of the draft tuple, the optimal acceptance of membership-cost transport
(Sun et al., SpecTr, NeurIPS 2023, eq. (OTM)) is the max-flow value of the bipartite network
``source -(Q(S))-> S -(inf, y in S)-> y -(p(y))-> sink``, hence by max-flow/min-cut
(docs/theory/membership_ot.md#optimal-acceptance-by-min-cut; Hu et al., ICLR 2025, "subset selection" dual)

.. math::  \alpha^* = \min_{H \subseteq \Omega}\; p(H) + 1 - Q(S(X) \subseteq H).

Draft laws handled here
-----------------------
``"iid"``: ``Q(S \subseteq H) = q(H)^k`` (docs/theory/membership_ot.md#the-prefix-cut-for-iid-drafts), so
``alpha* = min_j P_j + 1 - Q_j^k`` over the ``V + 1`` prefixes ``H_j`` of the tokens sorted by
``p/q`` ascending (``p = 0`` tokens first, ``q = 0`` tokens last); O(V log V).

``"without_replacement"``: ``G(H) = P_wor(all k drafts in H)`` by the exponential race
(docs/theory/membership_ot.md#drafts-without-replacement): token ``i`` arrives at ``E_i ~ Exp(q_i)``, the drafts are the first ``k``
arrivals, so with ``c = q(H^c)`` and ``N_H(t) ~`` Poisson-binomial(``1 - e^{-q_i t}``, ``i in H``)

.. math::  1 - G(H) = \int_0^\infty c\, e^{-ct}\, P(N_H(t) < k)\, dt .

The law of ``N_H(t)`` truncated at ``k`` is updated token by token along the sorted order (an
O(k) dynamic programme per node), so all prefixes cost O(V k L) for ``L`` quadrature nodes.
Quadrature: the substitution ``t = e^x`` turns the integrand into
``c e^x exp(-c e^x) P(N < k)``, analytic and decaying double-exponentially to the right and
like ``c e^x`` to the left; the trapezoidal rule on such integrands converges geometrically in
``1/h`` (Trefethen & Weideman, SIAM Review 56 (2014), "The exponentially convergent trapezoidal
rule", Thm 5.1). Nodes run over ``x in [log 1e-16, log t1]`` with step ``h = 1/8``:

* right end ``t1 = 45 / c_min`` (``c_min`` = the smallest positive ``c``): tail ``<= e^{-45}``;
* left of ``1e-16`` the integrand is ``c e^x`` to 1e-16, and ``1 - e^{-c 1e-16}`` is added exactly;
* at nodes ``t < t0`` the DP is skipped and ``P(N < k) = 1`` used, with error at most
  ``int_0^t0 c P(N >= k) dt <= int_0^t0 (q(H) t)^k / k! dt <= t0^{k+1}/(k+1)! := 1e-17``.

The same sum on every other node (step ``1/4``) gives the error estimate ``|T_h - T_{2h}|``,
reported as :attr:`CutResult.error_estimate`; for a geometrically convergent rule it exceeds the
error of ``T_h`` by a wide margin. It is an estimate, not a proven bound; measured agreement with
exact enumeration (V <= 7, k <= 4, Dirichlet(0.1) included) is ~1e-15.

``"greedy"`` (Hu et al., ICLR 2025; docs/theory/membership_ot.md#greedy-drafts): drafts ``T`` = top-(k-1) tokens of ``q``
plus one draw from ``q' = q`` restricted to ``Omega \ T`` renormalised. A cut must contain ``T``
(else ``Q(S \subseteq H) = 0`` and the value is ``>= 1``); then it contains ``x \notin T`` iff
``p(x) < q'(x)``, so ``alpha* = p(T) + sum_{x not in T} min(p(x), q'(x))``.

``"hub"`` (SpecHub, Sun et al., EMNLP 2024; docs/theory/membership_ot.md#hub-drafts), ``k = 2``: with ``a = argmax q``
the draft sets are ``{a, j}`` with ``Q({a, j}) = q_j / (1 - q_a)`` (computed as
``q_j / q(Omega - a)``); a cut of value ``< 1`` contains ``a``, and ``j`` enters ``H`` iff ``p_j < Q({a, j})``:
``alpha* = min(1, p_a + 1 - sum_{j != a} (Q({a,j}) - p_j)^+)``.

Proof that the minimiser is a prefix (i.i.d. drafts)
----------------------------------------------------
Write ``F(H) = p(H) - g(q(H))`` with ``g(x) = x^k`` (``alpha* = 1 + min_H F(H)``); ``g`` is
**convex** and increasing on ``[0, 1]`` (docs/theory/membership_ot.md#the-prefix-cut-for-iid-drafts
has the same argument). Let ``r_i = p_i / q_i`` and order the tokens so that
``r_(1) <= ... <= r_(V)`` (``p_i = 0`` gives ``r_i = 0``; ``q_i = 0`` gives ``r_i = +inf``).

1. *Relaxation.* For ``b in [0, 1]^V`` let ``F(b) = p.b - g(q.b)``. Subsets are the vertices, so
   ``min_b F(b) <= min_H F(H)``.
2. *Fractional knapsack.* For ``t in [0, 1]`` let ``h(t) = min {p.b : q.b = t, b in [0,1]^V}``.
   Exchanging mass between two coordinates ``i, j`` with ``r_i < r_j`` (lower ``b_j`` by
   ``delta/q_j``, raise ``b_i`` by ``delta/q_i``) keeps ``q.b`` and changes ``p.b`` by
   ``delta (r_i - r_j) <= 0``; hence an optimal ``b`` fills tokens greedily in the order above
   (``q = 0`` tokens get ``b = 0``, which costs nothing because ``p >= 0``), with at most one
   fractional coordinate. So ``h`` is piecewise linear with slopes ``r_(1) <= r_(2) <= ...``
   (convex) and breakpoints at the prefix masses ``Q_j = q(H_j)``, where ``h(Q_j) = P_j = p(H_j)``.
3. *Concavity on each piece.* ``min_b F(b) = min_t [h(t) - g(t)]``. On ``[Q_{j-1}, Q_j]`` ``h`` is
   affine and ``-g`` is concave, so ``h - g`` is concave there and attains its minimum at an
   endpoint, i.e. at a prefix: ``min_t [h(t) - g(t)] = min_j [P_j - g(Q_j)]``.
4. Chaining: ``min_j F(H_j) = min_b F(b) <= min_H F(H) <= min_j F(H_j)``; equality throughout.
   Prefixes of any tie-breaking order attain it (within a block of equal ratios ``h`` is affine,
   and every intermediate prefix is scanned). Tokens with ``q = 0`` (and ``p > 0``) only add
   ``p`` and therefore come last; ``p = q = 0`` tokens change nothing. QED.

The argument needs ``Q(S \subseteq H)`` to depend on ``H`` only through ``q(H)``.

Without replacement: reduction to an exchange lemma (the lemma is verified, not proved)
---------------------------------------------------------------------------------------
For drafts without replacement ``G(H) = P_wor(all drafts in H)`` depends on the individual
masses. Write ``Delta_i(H) = G(H + i) - G(H)``.

*Lemma (per-mass exchange inequality).* For ``i not in H``, ``j in H`` with ``q_i, q_j > 0``:
``Delta_i(H) / q_i >= Delta_j(H - j) / q_j``. For i.i.d. drafts this is the convexity of
``x^k`` (chord slopes right of ``q(H)`` exceed those left of it). For drafts without replacement
we have **no proof**; it holds in 524,792 exact checks (all ``H, i, j`` on 1,500 random
instances, V <= 7, k <= 5, masses >= 1e-5) and ``tests/test_closed_form.py`` re-checks it.

*Lemma => prefix.* Let ``H`` minimise ``F(H) = p(H) - G(H)``. Tokens with ``q = 0 < p`` are not
in ``H`` (dropping one lowers ``p(H)`` and leaves ``G``). Optimality against adding ``i`` and
removing ``j`` gives ``Delta_i(H) <= p_i`` and ``Delta_j(H - j) >= p_j``. If ``r_i < r_j`` then
``Delta_i(H)/q_i <= r_i < r_j <= Delta_j(H - j)/q_j``, contradicting the lemma; so every token
outside ``H`` has a ratio ``>=`` every ratio inside. If ``r_i = r_j`` the same chain forces
``Delta_i(H) = p_i``, so ``H + i`` is optimal too; repeating, an optimal ``H`` is a union of
whole blocks of equal ratio, i.e. a prefix of *every* tie-breaking of the sorted order. Hence
the prefix scan is exact for ``"without_replacement"`` given the lemma (and agrees with brute
force over all ``2^V`` subsets on every instance we tested, docs/theory/membership_ot.md#drafts-without-replacement and our tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import lgamma

import numpy as np

from ot_coupling.draft_laws import check_hub, greedy_split, hub_token
from ot_coupling.validation import validate_k, validate_pair

from .result import _UNSET, SolverResult, deprecated_alias, renamed_argument, warn_if_failed

#: draft laws with a closed form here
CLOSED_FORM_LAWS = ("iid", "without_replacement", "greedy", "hub")

# quadrature of the without-replacement race integral (see the module docstring)
_WOR_LEFT_TAIL = 1e-17
_WOR_T_MIN = 1e-16
_WOR_RIGHT = 45.0
_WOR_STEP = 0.125
_WOR_CHUNK = 512
#: a without-replacement cut whose quadrature error estimate exceeds this is flagged success=False
QUADRATURE_TOL = 1e-9


@dataclass(frozen=True, kw_only=True)
class CutResult(SolverResult):
    """The optimum ``alpha* = p(H) + 1 - Q(S subset of H)`` and a minimising set ``H``.

    Follows the solver result protocol (:class:`solvers.result.SolverResult`): ``value``,
    ``success``, ``status`` (0 = ok), ``message``. ``success`` is false (with a
    :class:`RuntimeWarning`) only when the without-replacement quadrature's error estimate exceeds
    :data:`QUADRATURE_TOL`.

    Attributes
    ----------
    value: the optimal acceptance ``alpha*``.
    cut: sorted token ids of the minimising set ``H``.
    draft_law, k: the draft law and the number of drafts (``drafts``: deprecated alias of ``draft_law``).
    target_mass: ``p(H)``.
    inside_mass: ``Q(S(X) subset of H)``, the probability that every draft lies in ``H``.
    error_estimate: quadrature error estimate (``"without_replacement"``), 0 for exact formulas.
    order: the scanned token order (``p/q`` ascending; ``"iid"`` and ``"without_replacement"``),
        of which ``cut`` is a prefix; ``None`` for the direct formulas.
    """

    value: float
    cut: np.ndarray
    draft_law: str
    k: int
    target_mass: float
    inside_mass: float
    error_estimate: float = 0.0
    order: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.cut.setflags(write=False)

    drafts = deprecated_alias("draft_law", "drafts")


def ratio_order(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Token ids sorted by ``p/q`` ascending: ``p = 0`` first (ratio 0), ``q = 0`` last (ratio inf).

    Tokens with ``p = q = 0`` go last too (they change no cut value). Stable for ties.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):   # beyond floats: inf
        r = np.where(q > 0, p / np.where(q > 0, q, 1.0), np.inf)
    return np.argsort(r, kind="stable")


def _suffix_sums(x: np.ndarray) -> np.ndarray:
    """``out[j] = sum(x[j:])`` for ``j = 0..n`` (``out[n] = 0``), accurate near zero."""
    out = np.zeros(x.size + 1)
    out[:-1] = np.cumsum(x[::-1])[::-1]
    return out


def _prefix_sums(x: np.ndarray) -> np.ndarray:
    out = np.zeros(x.size + 1)
    out[1:] = np.cumsum(x)
    return out


def _result(p, drafts, k, order, j, value, inside, err=0.0) -> CutResult:
    cut = np.sort(order[:j]).astype(np.int64)
    ok = bool(err <= QUADRATURE_TOL)
    message = "optimal" if ok else (f"quadrature error estimate {err:.1e} exceeds {QUADRATURE_TOL:g}")
    return warn_if_failed(CutResult(value=float(value), cut=cut, draft_law=drafts, k=k,
                                    target_mass=float(p[cut].sum()), inside_mass=float(inside),
                                    error_estimate=float(err), order=order, success=ok,
                                    status=0 if ok else 3, message=message), stacklevel=4)


def _cut_iid(p, q, k) -> CutResult:
    order = ratio_order(p, q)
    P = _prefix_sums(p[order])
    c = np.clip(_suffix_sums(q[order]), 0.0, 1.0)        # q(H_j^c)
    with np.errstate(divide="ignore"):                    # log1p(-1) = -inf at H = {} is right
        outside = -np.expm1(k * np.log1p(-c))             # 1 - (1 - c)^k = 1 - q(H_j)^k
    vals = P + outside
    j = int(np.argmin(vals))
    return _result(p, "iid", k, order, j, vals[j], 1.0 - outside[j])


def _wor_outside(q_sorted: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``1 - G(H_j)`` for every prefix ``H_j`` of ``q_sorted`` and the quadrature error estimate.

    Prefixes with fewer than ``k`` tokens of positive mass get ``1`` (no tuple fits inside).
    """
    V = q_sorted.size
    c = np.clip(_suffix_sums(q_sorted), 0.0, 1.0)
    n_pos = _prefix_sums((q_sorted > 0).astype(np.float64))
    outside = np.ones(V + 1)
    err = np.zeros(V + 1)
    feasible = (n_pos >= k) & (c > 0)
    outside[(n_pos >= k) & (c <= 0)] = 0.0
    if not feasible.any():
        return outside, err
    c_min = c[feasible].min()
    # nodes t_l = e^{x_l}: from t = 1e-16 (below it the integrand c t e^{-ct} is < 1e-16 and is
    # integrated analytically) to 45 / c_min. Below t0 (t0^{k+1}/(k+1)! = 1e-17) P(N < k) = 1 is
    # used instead of the DP (error <= 1e-17, see the module docstring).
    log_t0 = min((np.log(_WOR_LEFT_TAIL) + lgamma(k + 2)) / (k + 1), 0.0)
    x = np.arange(np.log(_WOR_T_MIN), np.log(_WOR_RIGHT / c_min) + _WOR_STEP, _WOR_STEP)
    t = np.exp(x)
    n_left = int(np.searchsorted(x, log_t0))
    trap = np.full(t.size, _WOR_STEP)
    trap[[0, -1]] *= 0.5
    coarse = np.zeros(t.size)
    coarse[::2] = 2 * _WOR_STEP
    coarse[[0, (t.size - 1) // 2 * 2]] *= 0.5
    t_dp = t[n_left:]
    # D[m, l] = P(N_H(t_l) = m) for m < k, H = current prefix (starts empty: N = 0)
    D = np.zeros((k, t_dp.size))
    D[0] = 1.0
    for start in range(0, V, _WOR_CHUNK):
        stop = min(start + _WOR_CHUNK, V)
        qs = q_sorted[start:stop]
        stay = np.exp(-np.outer(qs, t_dp))                # P(token not yet arrived at t)
        arrive = -np.expm1(-np.outer(qs, t_dp))
        below = np.ones((stop - start, t.size))           # P(N_{H_{j+1}}(t) < k)
        for i in range(stop - start):
            if qs[i] > 0:
                moved = D[:-1] * arrive[i]
                D *= stay[i]
                D[1:] += moved
            below[i, n_left:] = D.sum(axis=0)
        cc = c[start + 1:stop + 1]
        dens = cc[:, None] * t * np.exp(-np.outer(cc, t))  # c t e^{-ct}: the density in x = log t
        left = -np.expm1(-cc * _WOR_T_MIN)
        fine = left + (dens * below) @ trap
        rough = left + (dens * below) @ coarse
        sel = feasible[start + 1:stop + 1]
        outside[start + 1:stop + 1][sel] = np.clip(fine[sel], 0.0, 1.0)
        err[start + 1:stop + 1][sel] = np.abs(fine - rough)[sel]
    return outside, err


def _cut_wor(p, q, k) -> CutResult:
    n_support = int((q > 0).sum())
    if k > n_support:
        raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0, "
                         f"q has {n_support}")
    if k == 1:                                             # one draft: the same law as "iid"
        return replace(_cut_iid(p, q, 1), draft_law="without_replacement")
    order = ratio_order(p, q)
    P = _prefix_sums(p[order])
    outside, err = _wor_outside(q[order], k)
    vals = P + outside
    j = int(np.argmin(vals))
    return _result(p, "without_replacement", k, order, j, vals[j], 1.0 - outside[j], err[j])


def _cut_greedy(p, q, k) -> CutResult:
    top, rest = greedy_split(q, k)
    mask = np.zeros(q.size, dtype=bool)
    mask[top] = True
    others = ~mask
    value = p[top].sum() + np.minimum(p[others], rest[others]).sum()
    in_cut = mask | (others & (p < rest))
    cut = np.flatnonzero(in_cut).astype(np.int64)
    return CutResult(value=float(value), cut=cut, draft_law="greedy", k=k, target_mass=float(p[cut].sum()),
                     inside_mass=float(rest[in_cut & others].sum()))


def _cut_hub(p, q, k) -> CutResult:
    check_hub(q, k)
    a = hub_token(q)
    pair = q.copy()
    pair[a] = 0.0
    pair /= pair.sum()                                     # Q({a, j}) = q_j / q(Omega - a), j != a
    gain = np.clip(pair - p, 0.0, None)
    gain[a] = 0.0
    value = p[a] + 1.0 - gain.sum()
    if value >= 1.0:
        return CutResult(value=1.0, cut=np.zeros(0, dtype=np.int64), draft_law="hub", k=2,
                         target_mass=0.0, inside_mass=0.0)
    in_cut = gain > 0
    in_cut[a] = True
    cut = np.flatnonzero(in_cut).astype(np.int64)
    return CutResult(value=float(value), cut=cut, draft_law="hub", k=2, target_mass=float(p[cut].sum()),
                     inside_mass=float(pair[in_cut].sum()))


_CUTS = {"iid": _cut_iid, "without_replacement": _cut_wor, "greedy": _cut_greedy, "hub": _cut_hub}


def optimal_cut(p, q, k: int, draft_law: str = _UNSET, *, drafts: str = _UNSET) -> CutResult:
    """The optimal acceptance and a minimising set ``H`` of ``p(H) + 1 - Q(S subset of H)``.

    Parameters
    ----------
    p, q: target and draft distributions (length ``V``; exact zeros allowed).
    k: number of drafts.
    draft_law: ``"iid"`` (default) (O(V log V)), ``"without_replacement"`` (O(V k L), quadrature, see the module
        docstring), ``"greedy"`` or ``"hub"`` (O(V), ``k = 2``).
    drafts: deprecated old name of ``draft_law``.
    """
    drafts = renamed_argument(draft_law, drafts, "drafts", "draft_law", "iid")
    p_arr, q_arr = validate_pair(p, q)
    k = validate_k(k)
    if drafts not in _CUTS:
        raise ValueError(f"draft_law must be one of {', '.join(CLOSED_FORM_LAWS)} for the closed form, "
                         f"got {drafts!r}")
    return _CUTS[drafts](p_arr, q_arr, k)


def optimal_acceptance(p, q, k: int, draft_law: str = _UNSET, *, drafts: str = _UNSET) -> float:
    """``alpha*(p, q, k)``: the optimal acceptance of ``k`` drafts (see :func:`optimal_cut`)."""
    law = renamed_argument(draft_law, drafts, "drafts", "draft_law", "iid")
    return optimal_cut(p, q, k, law).value


def cut_value(p: np.ndarray, sets: np.ndarray, set_probs: np.ndarray, cut) -> float:
    """``p(H) + 1 - Q(S subset of H)`` for an explicit set law (``sets`` padded with ``-1``)."""
    inside = np.zeros(p.size + 1, dtype=bool)
    inside[np.asarray(cut, dtype=np.int64)] = True
    inside[-1] = True                                      # the pad -1 indexes this slot
    contained = inside[sets].all(axis=1)
    return float(p[np.asarray(cut, dtype=np.int64)].sum() + 1.0 - set_probs[contained].sum())

