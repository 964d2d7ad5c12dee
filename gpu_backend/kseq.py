"""SpecTr's K-SEQ in torch (Sun et al., NeurIPS 2023, Algorithm "K-SEQ"; docs/theory/token_verifiers.md#k-seq),
with the optimal division factor ``rho*`` computed per row, vectorised.

With ``beta(rho) = sum_x min(q(x), p(x)/rho)``: accept draft ``X_i`` (i = 1..k, first success
wins) when ``u_i rho q(X_i) < p(X_i)``; if all k are rejected output
``Y ~ p_res = [p - min(rho q, p) (1 - (1-beta)^k) / (rho beta)] / (1-beta)^k``. It is valid iff
``1 - (1-beta(rho))^k <= rho beta(rho)``, its acceptance is ``1 - (1 - beta(rho))^k``, decreasing in
rho, so ``rho*`` is the root in ``[1, k]`` of ``f(rho) = 1 - (1-beta)^k - rho beta`` (f is
non-increasing, ``f(1) >= 0 >= f(k)``). At ``rho*`` the residual is ``(p - rho* q)^+``.
"""

from __future__ import annotations

import torch

from .base import Noise, TorchSelector
from .ops import coin, membership, one_minus_power, race_sample, take

#: iteration cap of the safeguarded Newton solve inside the root's segment (bisection alone
#: needs 53 steps for float64; Newton typically converges in fewer than 8)
_MAX_STEPS = 64


def kseq_rho(p: torch.Tensor, q: torch.Tensor, k: int) -> torch.Tensor:
    """``rho*`` per row of the ``[B, V]`` pair, exact to float64 round-off (returned in float64).

    Between consecutive breakpoints ``r_x = p(x)/q(x)`` the function ``beta(rho) = A + P / rho``
    is affine in ``1/rho`` (``A`` = draft mass of tokens with ``r_x >= rho``, ``P`` = target mass of
    the others; SpecTr's "almost linear time" remark). One sort locates the segment holding the
    root: ``f`` at every breakpoint comes from cumulative sums. Inside it ``f`` is smooth and
    monotone, and a batched safeguarded Newton iteration on ``[B]`` scalars converges to the
    float64 root; the valid (upper) side is returned.
    """
    p64, q64 = p.to(torch.float64), q.to(torch.float64)
    batch = p64.shape[0]
    ones = torch.ones(batch, dtype=torch.float64, device=p64.device)
    if k == 1:
        return ones
    ratio = torch.where(q64 > 0, p64 / q64, torch.full_like(p64, torch.inf))
    r, order = torch.sort(ratio, dim=1, descending=True, stable=True)
    q_cum = torch.cumsum(take(q64, order), dim=1)                       # sum_{i <= j} q
    p_tail = torch.flip(torch.cumsum(torch.flip(take(p64, order), [1]), dim=1), [1])
    p_tail = torch.cat([p_tail[:, 1:], torch.zeros_like(p_tail[:, :1])], dim=1)  # sum_{i > j} p
    inside = (r > 1) & (r < k)
    r_safe = torch.where(inside, r, ones.unsqueeze(1))
    beta = (q_cum + p_tail / r_safe).clamp(0, 1)
    f = one_minus_power(beta, k) - (r_safe * q_cum + p_tail)
    lo = torch.where(inside & (f > 0), r, ones.unsqueeze(1)).amax(dim=1)
    hi = torch.where(inside & (f <= 0), r, torch.full_like(r, float(k))).amin(dim=1)
    # rho = 1 valid up to round-off (f(1) = 0 when p == q or the supports are disjoint). For p == q,
    # f = -(1 - 1/rho)^k: a k-fold root at 1 that no float search can locate better than this.
    beta_1 = torch.minimum(p64, q64).sum(dim=1)
    f_1 = one_minus_power(beta_1, k) - beta_1
    hi = torch.where(f_1 <= 8 * torch.finfo(torch.float64).eps, ones, hi)
    lo = torch.minimum(lo, hi)
    # segment constants for rho in (lo, hi): no breakpoint lies strictly inside
    upper = ratio > lo.unsqueeze(1)
    a = torch.where(upper, q64, 0).sum(dim=1)
    b = torch.where(upper, 0, p64).sum(dim=1)
    return _segment_root(a, b, lo, hi, k)


def _segment_root(a: torch.Tensor, b: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                  k: int) -> torch.Tensor:
    """Root of ``f(rho) = 1 - (1 - a - b/rho)^k - rho a - b`` in ``[lo, hi]`` (f(lo) >= 0 >= f(hi)).

    Safeguarded Newton (``f' = -k (1 - beta)^(k-1) b / rho^2 - a < 0``; a step leaving the bracket
    is replaced by bisection; a row stops when its step or ``|f|`` is at round-off), then the
    smallest of ``x (1 + j eps)``, ``j in {0, 1, 2, 4, ..., 2^23}``, with ``f <= 0`` (or the
    bracket's valid end): the valid side within a few ulps of the float64 root.
    """
    def f(r):
        beta = (a + b / r).clamp(0, 1)
        return one_minus_power(beta, k) - (r * a + b), beta

    eps = torch.finfo(torch.float64).eps
    x = 0.5 * (lo + hi)
    for _ in range(_MAX_STEPS):
        fx, beta = f(x)
        lo = torch.where(fx > 0, x, lo)
        hi = torch.where(fx <= 0, x, hi)
        slope = -k * (1 - beta) ** (k - 1) * b / x ** 2 - a
        step = torch.where(slope < 0, x - fx / torch.where(slope < 0, slope, -1), lo)
        newton = (step > lo) & (step <= hi)
        x_new = torch.where(newton, step, 0.5 * (lo + hi))
        # converged: bracket, Newton step or |f| at round-off (f is noisy near a flat root)
        done = (hi - lo <= 4 * eps * hi) | ((step - x).abs() <= 4 * eps * x) | (fx.abs() <= 8 * eps)
        if bool(done.all()):
            break
        x = x_new
    ulps = torch.cat([torch.zeros(1, dtype=x.dtype, device=x.device),
                      2.0 ** torch.arange(24, dtype=x.dtype, device=x.device)])
    candidates = x.unsqueeze(1) * (1 + eps * ulps)
    cand_f, _ = f(candidates.T)
    polished = torch.where(cand_f.T <= 0, candidates, torch.inf).amin(dim=1)
    return torch.minimum(hi, polished)


def _beta(p: torch.Tensor, q: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    return torch.minimum(q, p / rho.unsqueeze(1)).sum(dim=1)


class TorchKSeq(TorchSelector):
    """Batched K-SEQ with ``rho*``; numpy reference :class:`ot_coupling.kseq.KSeq`."""

    name = "kseq"
    draft_law = "iid"

    def rho(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """``rho*`` per row (float64), see :func:`kseq_rho`."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        return kseq_rho(p_t, q_t, k)

    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """``1 - (1 - beta(rho*))^k`` per row."""
        p_t, q_t, k = self._prepare(p, q, k, logits=logits)
        rho = kseq_rho(p_t, q_t, k).to(p_t.dtype)
        return one_minus_power(_beta(p_t, q_t, rho), k)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``coins [B, k]`` uniforms (one per draft) and ``race [B, V]`` exponentials."""
        return {"coins": ((batch, k), "uniform"), "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        k = drafts.shape[1]
        rho = kseq_rho(p, q, k).to(p.dtype)
        hits = coin(noise["coins"], take(p, drafts), rho.unsqueeze(1) * take(q, drafts))
        first = hits.long().argmax(dim=1)  # first accepted draft (0 when none; masked below)
        beta = _beta(p, q, rho)
        scale = one_minus_power(beta, k) / (rho * beta)
        scale = torch.where(rho * beta > 0, scale.clamp(max=1), torch.ones_like(scale))
        residual = p - scale.unsqueeze(1) * torch.minimum(rho.unsqueeze(1) * q, p)
        fallback = race_sample(residual, noise["race"], fallback=p)
        tokens = torch.where(hits.any(dim=1), take(drafts, first.unsqueeze(1)).squeeze(1), fallback)
        return tokens, membership(tokens, drafts)
