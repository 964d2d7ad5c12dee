"""Shared-Gumbel coupling (GumbelSpec, T. Shen; drafter-invariant decoding, Daliri, Musco & Suresh,
arXiv 2408.07978), docs/theory/token_verifiers.md#gumbel-coupling.

One noise vector drives both models: with ``G_x`` i.i.d. Gumbel(0, 1), the target token is
``Y = argmax_x (log p_x + G_x)`` and the drafts are the top-k of ``log q_x + G_x``, in order
(so marginally they follow the ``"without_replacement"`` law). Writing ``E_x = exp(-G_x) ~ Exp(1)``,
``Y = argmin E_x / p_x`` and the drafts are the first ``k`` arrivals of the race ``A_x = E_x / q_x``.
``Y ~ p`` exactly (Gumbel-max), whatever the drafter.

Verification from the drafts alone. :meth:`GumbelCoupling.verify` is given only the draft tuple,
so it samples the noise conditionally on the draft *set* ``S`` being the first ``k`` arrivals: an
order of ``S`` is drawn from ``P(order | S)`` by the subset recursion of :func:`sample_order_given_set`
(``O(2^k k)``), then by memorylessness the
arrival times are ``T_i = T_{i-1} + Exp(1) / (1 - q(X_1..X_{i-1}))`` for the drafts and
``A_x = T_k + Exp(1) / q_x`` for the other tokens with ``q_x > 0`` (``E_x ~ Exp(1)`` freely when
``q_x = 0``); then ``Y = argmin E_x / p_x``. This is the exact law of ``Y`` given ``S`` under the
coupling, so draft-then-verify has the same joint law of (drafts, Y) as :meth:`GumbelCoupling.sample`,
which draws ``G`` once.

Exact conditional law (our derivation). Condition on the target's winner ``(Y, W) = (y, w)``,
``W = min_x E_x / p_x ~ Exp(1)`` independent of ``Y ~ p``. Then ``A_y = w r_y`` (``r = p / q``) and
the other clocks are independent, ``A_x = w (r_x + Exp(q_x w) / w)``, i.e. at scaled time ``s`` token
``x`` has arrived with probability ``1 - exp(-w q_x (s - r_x)^+)``. Expanding the product over the
drafted tokens by inclusion-exclusion (subsets ``J``) and integrating ``w`` out in closed form gives

* ``y not in S``: ``P(Y=y, S) = p_y int_0^{r_y} sum_{J subset S, J != {}} (-1)^{|J|+1} a_J'(s) /
  (1 + a_J(s) + b(s))^2 ds``,
* ``y in S`` (``S' = S - {y}``): ``p_y [ sum_{J subset S'} (-1)^{|J|} / (1 + a_J(r_y) + b(r_y))
  + int_{r_y}^inf sum_{J != {}} (-1)^{|J|+1} a_J'(s) / (1 + a_J(s) + b(s))^2 ds ]``,

with ``a_J(s) = sum_{x in J} q_x (s - r_x)^+`` and ``b(s) = sum_{z undrafted, z != y} q_z (s - r_z)^+``.
Between breakpoints ``a_J + b`` is affine, so each integral is a finite sum of
``c (s_1 - s_0) / (L_0 L_1)`` terms: exact, ``O(2^k V^2)`` per draft set (small ``k`` only). The
inclusion-exclusion signs cancel (badly for draft sets of tiny probability); every step is
rational, so a target token whose float sum cancels by more than a factor 100 is recomputed in
exact rational arithmetic (:class:`fractions.Fraction`): no NaN, no negative value
(docs/numerics.md).

Exact acceptance: ``alpha = sum_y p_y int_0^inf e^{-w} P(N_y(w) <= k - 1) dw``, ``N_y(w)`` counting
draft tokens beating ``y`` (Poisson-binomial of probabilities ``1 - exp(-c_x w)``,
``c_x = (q_x p_y / q_y - p_x)^+``); for ``k = 1`` it is ``sum_x 1 / sum_j max(p_j / p_x, q_j / q_x)``
(docs/theory/token_verifiers.md#gumbel-coupling). Computed by the array-API kernel
:func:`ot_coupling.kernels.race.gumbel_acceptance` (shared with torch; error < 1e-13).
"""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations

import numpy as np

from .base import Selector
from .draft_laws import set_law
from .kernels.race import gumbel_acceptance as _gumbel_acceptance_rows
from .validation import SeedLike, as_generator


def _orders_given_sets(qs: np.ndarray, q_out: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise order of the draft sets from ``P(order | set)``, driven by uniforms ``u [B, k]``.

    ``qs [B, k]``: draft masses; ``q_out [B]``: mass of the other tokens. With ``h(R)`` = P(the
    tokens of ``R`` all ring before any token outside the set), memorylessness gives
    ``h(R) = sum_{x in R} q_x h(R - x) / (q(R) + q_out)``, ``h({}) = 1`` (``O(2^k k)``); the conditioned
    race picks the next arrival ``x`` with probability ``q_x h(R - x) / sum_y q_y h(R - y)``.
    Returns ``(positions [B, k], race rate before each arrival [B, k])``.
    """
    B, k = qs.shape
    rows = np.arange(B)
    bits = 1 << np.arange(k)
    h = np.zeros((B, 1 << k))
    h[:, 0] = 1.0
    mass = np.zeros((B, 1 << k))
    for R in range(1, 1 << k):
        members = np.flatnonzero(R & bits)
        mass[:, R] = qs[:, members].sum(axis=1)
        h[:, R] = sum(qs[:, i] * h[:, R ^ bits[i]] for i in members) / (mass[:, R] + q_out)
    R = np.full(B, (1 << k) - 1)
    positions = np.empty((B, k), dtype=np.int64)
    rates = np.empty((B, k))
    for step in range(k):
        rates[:, step] = mass[rows, R] + q_out
        inside = (R[:, None] & bits[None, :]) > 0
        w = np.where(inside, qs * h[rows[:, None], R[:, None] ^ bits[None, :]], 0.0)
        cdf = np.cumsum(w, axis=1)
        pick = np.minimum((cdf <= (u[:, step] * cdf[:, -1])[:, None]).sum(axis=1), k - 1)
        last_member = k - 1 - np.argmax(inside[:, ::-1], axis=1)  # round-off at the top of the cdf
        pick = np.where(inside[rows, pick], pick, last_member)
        positions[:, step] = pick
        R = R ^ bits[pick]
    return positions, rates


def sample_order_given_set(q: np.ndarray, S: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One order of the draft set ``S`` from ``P(order | S are the first |S| arrivals)``."""
    S = np.asarray(S, dtype=np.int64)
    q_out = np.delete(q, S).sum()
    pos, _ = _orders_given_sets(q[S][None], np.array([q_out]), rng.random((1, S.size)))
    return S[pos[0]]


#: the float evaluation of one ``P(Y = y, S)`` is redone in exact rational arithmetic when the
#: inclusion-exclusion cancels more than this factor (sum of |terms| / |sum|); below it the float
#: result is accurate to ~1e-13 relative (docs/numerics.md)
_CANCELLATION_LIMIT = 100.0


def _joint_one(p, q, r, arrives, S: list[int], y: int, num):
    """Signed terms of ``P(Y = y, S) / p_y`` (module docstring), in the number type ``num``.

    ``num`` is ``float`` or :class:`fractions.Fraction` (exact: every operation is rational);
    ``r[x] is None`` encodes ``r_x = inf`` (``q_x = 0``). Returns the list of terms.
    """
    drafted = [x for x in S if x != y]
    undrafted = [z for z in arrives if z not in S and z != y]
    knots_all = sorted({r[x] for x in S + undrafted})
    in_s = y in S
    lo, hi = (r[y], None) if in_s else (num(0), r[y])          # hi None: +inf
    pts = [lo] + [t for t in knots_all if t > lo and (hi is None or t < hi)]
    one = num(1)
    zero = num(0)

    def level(s, J):                                            # 1 + a_J(s) + b(s)
        out = one
        for x in J:
            if r[x] < s:
                out += q[x] * (s - r[x])
        for z in undrafted:
            if r[z] < s:
                out += q[z] * (s - r[z])
        return out

    b_slopes = []                                                # slope of b on each segment
    for s0 in pts:
        b_slopes.append(sum((q[z] for z in undrafted if r[z] <= s0), zero))
    terms = []
    subsets = [J for m in range(len(drafted) + 1) for J in combinations(drafted, m)]
    if in_s:
        for J in subsets:
            terms.append((-one if len(J) % 2 else one) / level(r[y], J))
    for J in subsets:
        if not J:
            continue
        sign = one if len(J) % 2 else -one
        for j, s0 in enumerate(pts):
            s1 = pts[j + 1] if j + 1 < len(pts) else hi
            c = sum((q[x] for x in J if r[x] <= s0), zero)
            if c == 0:
                continue
            beta = c + b_slopes[j]
            L0 = level(s0, J)
            if s1 is None:
                terms.append(sign * c / (beta * L0))
            else:
                terms.append(sign * c * (s1 - s0) / (L0 * (L0 + beta * (s1 - s0))))
    return terms


def _joint(p: np.ndarray, q: np.ndarray, S, exact: bool) -> list:
    """``P(Y = y, S)`` for every ``y`` as Python floats (exact fallback per ``y`` where the
    inclusion-exclusion cancels) or, with ``exact``, as :class:`fractions.Fraction`."""
    S = sorted(int(x) for x in S)
    V = p.size
    arrives = [int(x) for x in np.flatnonzero(q > 0)]
    pf = [float(v) for v in p]
    qf = [float(v) for v in q]
    rf = [pf[x] / qf[x] if qf[x] > 0 else None for x in range(V)]
    fr = None

    def exact_tables():
        pe = [Fraction(v) for v in pf]
        qe = [Fraction(v) for v in qf]
        return pe, qe, [pe[x] / qe[x] if qf[x] > 0 else None for x in range(V)]

    out = []
    for y in range(V):
        if pf[y] <= 0:
            out.append(Fraction(0) if exact else 0.0)
            continue
        if not exact:
            with np.errstate(all="ignore"):
                terms = _joint_one(pf, qf, rf, arrives, S, y, float)
            total, size = float(np.sum(terms)) if terms else 0.0, float(np.sum(np.abs(terms))) if terms else 0.0
            if np.isfinite(total) and total > 0 and size <= _CANCELLATION_LIMIT * total:
                out.append(pf[y] * total)
                continue
        if fr is None:
            fr = exact_tables()
        pe, qe, re_ = fr
        total = sum(_joint_one(pe, qe, re_, arrives, S, y, Fraction), Fraction(0))
        total = max(total, Fraction(0))                          # exact: never negative
        out.append(pe[y] * total if exact else float(pe[y] * total))
    return out


def joint_set_law(p: np.ndarray, q: np.ndarray, S) -> np.ndarray:
    """``P(Y = y, draft set = S)`` for every ``y`` under the shared-Gumbel coupling.

    Evaluated in float64 where the inclusion-exclusion over subsets of ``S`` is well conditioned
    and in exact rational arithmetic (:class:`fractions.Fraction`; every step of the closed form
    is rational) where it cancels, so every entry is non-negative and within ~1e-13 relative of
    the exact value (docs/numerics.md); entries below the float range are 0.
    """
    return np.array(_joint(np.asarray(p, np.float64), np.asarray(q, np.float64), S, exact=False))


def conditional_set_law(p: np.ndarray, q: np.ndarray, S) -> np.ndarray:
    """``P(Y = y | draft set = S)`` for every ``y``: the normalised :func:`joint_set_law`; exact rational
    normalisation when ``P(S)`` is too small for float64 (never NaN)."""
    joint = joint_set_law(p, q, S)
    total = joint.sum()
    if total > 1e-250:
        return joint / total
    exact = _joint(np.asarray(p, np.float64), np.asarray(q, np.float64), S, exact=True)
    tot = sum(exact, Fraction(0))
    if tot <= 0:
        raise ValueError(f"draft set {sorted(S)} has probability 0 under the Gumbel-top-k law")
    return np.array([float(v / tot) for v in exact])


#: largest ``(target token, token)`` rate matrix the exact acceptance builds for ``k > 1``
#: (``O(V^2)`` memory: 2^25 float64 = 256 MiB, about V = 5800); larger inputs are refused before any work
MAX_PAIRS = 2**25


def gumbel_acceptance(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """Exact ``P(Y in drafts)`` of the shared-Gumbel coupling (race integral per target token).

    ``k = 1``: ``O(V log V)``. ``k > 1``: ``O(m^2 k n_nodes)`` time and an ``[m, m]`` rate matrix
    over the ``m`` tokens with ``q > 0`` (the others neither win a draft slot nor race), refused with
    ``ValueError`` when it would exceed :data:`MAX_PAIRS` entries (docs/numerics.md; the torch
    selector or a sampled estimate serves larger vocabularies). Kernel:
    :func:`ot_coupling.kernels.race.gumbel_acceptance`.
    """
    support = np.flatnonzero(q > 0)
    if k > 1 and support.size * support.size > MAX_PAIRS:
        raise ValueError(f"exact gumbel acceptance needs a {support.size:,} x {support.size:,} rate matrix, "
                         f"more than MAX_PAIRS={MAX_PAIRS:,} entries; use the torch selector "
                         "(gpu_backend) or a sampled estimate")
    return float(_gumbel_acceptance_rows(p[None, support], q[None, support], k)[0])


class GumbelCoupling(Selector):
    """Shared-Gumbel coupling of the target sample and Gumbel-top-k drafts."""

    name = "gumbel"
    draft_law = "without_replacement"

    def _check(self, p, q, k):
        p, q, k = super()._check(p, q, k)
        if int((q > 0).sum()) < k:
            raise ValueError(f"k={k} drafts without replacement need at least k tokens with q > 0, "
                             f"q has {int((q > 0).sum())}")
        return p, q, k

    def acceptance(self, p, q, k: int) -> float:
        p, q, k = self._check(p, q, k)
        return gumbel_acceptance(p, q, k)

    def conditional_law(self, p, q, drafts) -> np.ndarray:
        """``P(Y | draft set)`` (the verifier uses the set; see the module docstring)."""
        p, q, d = self._check_drafts(p, q, drafts)
        return conditional_set_law(p, q, set(d.tolist()))

    def enumerate(self, p, q, k: int) -> tuple[np.ndarray, float]:
        """Exact ``(output law, acceptance)``: ``sum_S Q(S) K(. | S)`` over draft *sets* (the
        conditional law depends on the tuple only through its set, so each set is solved once)."""
        p, q, k = self._check(p, q, k)
        out, acc = np.zeros_like(p), 0.0
        for S, w in set_law(*self.draft_tuples(q, k)).items():
            law = w * conditional_set_law(p, q, S)
            out += law
            acc += law[sorted(S)].sum()
        return out, float(acc)

    def sample(self, p, q, k: int, rng: SeedLike = None) -> tuple[int, bool, np.ndarray]:
        """Draw the Gumbel noise once: drafts = top-k of ``log q + G``, ``Y = argmax log p + G``."""
        p, q, k = self._check(p, q, k)
        e = as_generator(rng).exponential(size=p.size)
        with np.errstate(divide="ignore"):
            drafts = np.argsort(np.where(q > 0, e / q, np.inf), kind="stable")[:k].astype(np.int64)
            token = int(np.argmin(np.where(p > 0, e / p, np.inf)))
        return token, bool(token in drafts), drafts

    def n_uniforms(self, k: int, V: int) -> int:
        """Uniforms consumed by one verification: ``k`` (order) + ``k`` (arrival gaps) + ``V`` (others)."""
        return 2 * k + V

    def verify_uniforms(self, p, q, drafts, u) -> tuple[int, bool]:
        """:meth:`verify` with the randomness passed in (:meth:`n_uniforms` values in ``[0, 1)``)."""
        p, q, d = self._check_drafts(p, q, drafts)
        if np.unique(d).size != d.size or (q[d] <= 0).any():
            raise ValueError("drafts must be distinct tokens with q > 0 (Gumbel-top-k)")
        tokens, accepted = self.verify_batch_uniforms(p[None], q[None], d[None], np.asarray(u, float)[None])
        return int(tokens[0]), bool(accepted[0])

    def verify(self, p, q, drafts, rng: SeedLike = None) -> tuple[int, bool]:
        p_arr = np.asarray(p)
        u = as_generator(rng).random(self.n_uniforms(np.asarray(drafts).size, p_arr.size))
        return self.verify_uniforms(p, q, drafts, u)

    def verify_batch_uniforms(self, P, Q, D, U) -> tuple[np.ndarray, np.ndarray]:
        """Row ``b`` is ``verify_uniforms(P[b], Q[b], D[b], U[b])`` (inputs assumed valid)."""
        P, Q = np.asarray(P, np.float64), np.asarray(Q, np.float64)
        D = np.asarray(D, dtype=np.int64)
        B, k = D.shape
        rows = np.arange(B)[:, None]
        drafted = np.zeros(P.shape, dtype=bool)
        drafted[rows, D] = True
        qs = Q[rows, D]
        q_out = np.where(drafted, 0.0, Q).sum(axis=1)
        pos, rates = _orders_given_sets(qs, q_out, U[:, :k])
        order = D[rows, pos]
        times = np.cumsum(-np.log1p(-U[:, k : 2 * k]) / rates, axis=1)
        e = -np.log1p(-U[:, 2 * k :])  # Exp(1); unconstrained where q = 0
        rest = (Q > 0) & ~drafted
        e = np.where(rest, Q * times[:, -1:] + e, e)  # E_x = q_x (T_k + Exp(1) / q_x)
        e[rows, order] = Q[rows, order] * times
        with np.errstate(divide="ignore"):
            tokens = np.argmin(np.where(P > 0, e / np.where(P > 0, P, 1.0), np.inf), axis=1)
        return tokens.astype(np.int64), drafted[np.arange(B), tokens]

    def verify_batch(self, p, q, drafts, rng: SeedLike = None) -> tuple[np.ndarray, np.ndarray]:
        D = np.asarray(drafts, dtype=np.int64)
        U = as_generator(rng).random((D.shape[0], self.n_uniforms(D.shape[1], np.asarray(p).shape[1])))
        return self.verify_batch_uniforms(p, q, D, U)
