"""Exact theorems of Yin, Chen, Huang, Wang, "A Theoretical Perspective for Speculative Decoding
Algorithm" (NeurIPS 2024) on Markov-chain LMs (docs/theory/markov.md).

Letters: the paper writes ``q`` for the target and ``p`` for the draft; here ``p`` is the target
and ``q`` the draft, as everywhere in specot.

* Theorem 1: with unlimited lookahead, ``E[N_rej] = sum_{n=1}^T E_{x_{<n} ~ p}[TV(p_n, q_n)]``
  (the prefix law is the *target's*: speculative decoding is unbiased);
* Theorem 2: the same sum lower-bounds ``E[N_rej]`` of every unbiased rejection-based rule
  (a single step accepts with probability ``<= 1 - TV``);
* batch speculative decoding with ``M`` i.i.d. drafts (Algorithm B, docs/theory/markov.md#batch-speculative-decoding, reconstructed):
  recursive rejection sampling over the ``M`` first tokens at a round start, then single-draft
  speculative decoding; its single-step rejection probability is
  ``rho_M = prod_{m=0}^{M-1} TV(q, r_m)`` (``r_0 = p``, ``r_{m+1} = (r_m - q)^+ / TV``) and
  ``E[N_rej] = Thm1 - sum_n sum_x f_n(x) [TV(p_n, q_n) - rho_M(p_n, q_n)]`` with ``f_n`` the
  sub-probability that position ``n`` starts a round with prefix ``x`` (forward DP);
* the batch-improvement closed forms for Bernoulli and uniform pairs, and the ``M -> infinity``
  limit (``rho_inf``; rejections inside rounds are untouched, so the limit stays positive).
"""

from __future__ import annotations

import numpy as np

from ot_coupling.validation import validate_k, validate_pair

from .branch import rrs_residuals
from .model import MarkovLM, tv_rows
from .pair import ModelPair
from .tradeoff import check_acceptance


def prefix_tv(target: MarkovLM, draft: MarkovLM, n_tokens: int) -> np.ndarray:
    """``E_{x_{<n} ~ p}[TV(p_n, q_n)]`` for ``n = 1..T``: forward propagation of the target's
    context marginals (Yin et al. Thm 1, docs/theory/markov.md#expected-rejections)."""
    pair = ModelPair(target, draft, n_tokens)
    law = pair.prompt_law()
    out = np.empty(pair.n_tokens)
    for t in range(pair.n_tokens):
        P, Q = pair.tables(t)
        out[t] = law @ tv_rows(P, Q)
        law = pair.advance_mass(law[:, None] * P)
    return out


def expected_rejections(target: MarkovLM, draft: MarkovLM, n_tokens: int) -> float:
    """Yin et al. Theorem 1: ``E[N_rej] = sum_n E_{x_{<n} ~ p}[TV(p_n(.|x_{<n}), q_n(.|x_{<n}))]``
    for speculative decoding (k = 1) with unlimited lookahead (docs/theory/markov.md#expected-rejections)."""
    return float(prefix_tv(target, draft, n_tokens).sum())


def rejection_lower_bound(target: MarkovLM, draft: MarkovLM, n_tokens: int) -> float:
    """Yin et al. Theorem 2: every unbiased rejection-based algorithm (any acceptance ``b_t`` and
    resampling law) has ``E[N_rej] >=`` the Theorem 1 sum; speculative decoding attains it
    (docs/theory/markov.md#optimality-of-speculative-sampling). Per step, unbiasedness forces ``q(x) b(x) <= p(x)``, so
    ``P(accept) <= sum_x min(p, q) = 1 - TV``."""
    return expected_rejections(target, draft, n_tokens)


def expected_calls_unlimited(target: MarkovLM, draft: MarkovLM, n_tokens: int) -> float:
    """``E[target calls]`` of speculative decoding with unlimited lookahead: one call per round,
    and a rejection at any position but the last opens a round, so
    ``E[calls] = 1 + sum_{n < T} E[TV_n]`` (docs/theory/markov.md#decoding-as-a-markov-chain bookkeeping, ``in [E N_rej, E N_rej + 1]``)."""
    tv = prefix_tv(target, draft, n_tokens)
    return float(1.0 + tv[:-1].sum())


def unbiased_resampling(p, q, b) -> np.ndarray:
    """The resampling law that makes the rejection rule ``(b, P)`` unbiased (Thm 2 class):
    ``P = (p - q b) / (1 - sum q b)``; needs ``q b <= p`` (``ValueError`` otherwise)."""
    p, q = validate_pair(p, q)
    b = check_acceptance(b, p.size)
    accepted = q * b
    if (accepted > p + 1e-12).any():
        raise ValueError("b over-accepts (q b > p somewhere): no resampling law is unbiased")
    rest = np.maximum(p - accepted, 0.0)
    total = rest.sum()
    return rest / total if total > 0 else p.copy()


# ----------------------------------------------------------------------------- batch (M drafts)
def batch_rejection_probability(p, q, M: int | None) -> float:
    """``rho_M(p, q) = prod_{m<M} TV(q, r_m)``: probability that recursive rejection over ``M``
    i.i.d. drafts from ``q`` rejects all of them (docs/theory/markov.md#batch-speculative-decoding). ``M=None``: the limit
    ``M -> infinity``, ``rho_inf = p({x : q(x) = 0})`` (> 0 only when the target puts mass off the
    draft's support)."""
    p, q = validate_pair(p, q)
    return float(_rho(p[None], q[None], M)[0])


def _rho(P: np.ndarray, Q: np.ndarray, M: int | None) -> np.ndarray:
    """``rho_M`` per row. The limit is ``rho_inf = p({x : q(x) = 0})``: the unnormalised residual
    ``g_m = rho_m r_m`` obeys ``g_{m+1} = (g_m - rho_m q)^+`` and ``rho_m >= rho_inf``, so the mass
    on the draft's support is used up while the mass off it is never touched."""
    if M is None:
        return np.where(Q > 0, 0.0, P).sum(axis=-1)
    _, beta = rrs_residuals(P, Q, validate_k(M, "M"))
    return np.prod(1.0 - beta, axis=0)


def batch_improvement(p, q, M: int | None) -> float:
    """Single-step batch improvement ``BI(M) = TV(p, q) - rho_M(p, q)`` (docs/theory/markov.md#batch-speculative-decoding)."""
    p, q = validate_pair(p, q)
    return float(tv_rows(p, q) - batch_rejection_probability(p, q, M))


def bernoulli_batch_improvement(target_prob: float, draft_prob: float, M) -> np.ndarray | float:
    """Closed form for target ``Ber(b)``, draft ``Ber(a)``, ``b > a``:
    ``BI(M) = (b - a)(1 - (1 - a)^(M - 1))`` (docs/theory/markov.md#batch-speculative-decoding; e.g. a=.3, b=.6: .09, .153, .1971, .228
    for M = 2..5)."""
    a, b = float(draft_prob), float(target_prob)
    if not 0.0 <= a < b <= 1.0:
        raise ValueError(f"need 0 <= draft_prob < target_prob <= 1, got {a!r}, {b!r}")
    M = np.asarray(M)
    if (M < 1).any():
        raise ValueError("M must be >= 1")
    return (b - a) * (1.0 - (1.0 - a) ** (M - 1.0))


def uniform_batch_improvement(vocab_size: int, support: int, M) -> np.ndarray | float:
    """Closed form for target ``Unif(first s tokens)``, draft ``Unif(V)``:
    ``BI(M) = (1 - s/V) - (1 - s/V)^M`` (docs/theory/markov.md#batch-speculative-decoding; decreasing in ``V``)."""
    V, s = validate_k(vocab_size, "vocab_size"), validate_k(support, "support")
    if s > V:
        raise ValueError(f"support must be <= vocab_size, got {s} > {V}")
    M = np.asarray(M)
    if (M < 1).any():
        raise ValueError("M must be >= 1")
    g = 1.0 - s / V
    return g - g**M


def batch_expected_rejections(target: MarkovLM, draft: MarkovLM, n_tokens: int, M: int | None) -> float:
    """``E[N_rej]`` of batch speculative decoding (Algorithm B) with ``M`` drafts, unlimited
    lookahead, by the round-start DP of docs/theory/markov.md#batch-speculative-decoding (``M=None``: the limit ``M -> infinity``).

    State ``(context, s)`` with ``s = 1`` when the position starts a round. From a round start the
    token is ``y`` with a rejection w.p. ``rho_M r_M(y)`` (the next position starts a round) and
    accepted w.p. ``p(y) - rho_M r_M(y)``; inside a round, rejected w.p. ``(p - q)^+(y)`` and
    accepted w.p. ``min(p, q)(y)``. ``M = 1`` recovers Theorem 1.
    """
    pair = ModelPair(target, draft, n_tokens)
    start = pair.prompt_law()
    inside = np.zeros_like(start)
    total = 0.0
    cache: dict[int, tuple] = {}
    for t in range(pair.n_tokens):
        key = 0 if pair.stationary else t
        if key not in cache:
            P, Q = pair.tables(t)
            if M is None:
                rho = _rho(P, Q, None)
                # the limiting residual is the target's mass outside the draft support
                R = np.where(Q > 0, 0.0, P)
                tot = R.sum(axis=1, keepdims=True)
                R = np.divide(R, tot, out=np.zeros_like(R), where=tot > 0)
            else:
                Rs, _ = rrs_residuals(P, Q, validate_k(M, "M"))
                rho, R = _rho(P, Q, M), Rs[-1]
            cache[key] = (P, Q, rho[:, None] * R, np.maximum(P - Q, 0.0))
        P, Q, rej_start, rej_inside = cache[key]
        total += start @ rej_start.sum(axis=1) + inside @ rej_inside.sum(axis=1)
        new_start = pair.advance_mass(start[:, None] * rej_start + inside[:, None] * rej_inside)
        new_inside = pair.advance_mass(start[:, None] * (P - rej_start) + inside[:, None] * (P - rej_inside))
        start, inside = new_start, new_inside
    return float(total)
