"""The optimal k-draft verifier (i.i.d. drafts) in torch: two-level importance sampling, batched.

docs/theory/optimal_verifier.md; numpy reference
:class:`solvers.optimal_verifier.OptimalVerifier` (``method="importance"``, same algorithm and
quadrature, :mod:`solvers.importance_weights`). Per row of ``[B, V]`` inputs:

1. sort by ``p/q``, the minimising prefix ``H`` of ``alpha* = min_H p(H) + 1 - q(H)^k`` and the
   thresholds of ``r* = q clip(p/q, theta_B, theta_A)`` by prefix scans (sec. 3; the array-API
   kernel :func:`ot_coupling.kernels.selection.selection_scan`, shared with the numpy reference);
2. per level (``A = V \\ H`` and ``H``) the target ratios (``r*/q``, or the coarse targets of
   :func:`solvers.importance_weights.level_targets`, computed on the host), their groups, and a
   damped Newton fit of ``log lam`` on the convex dual, the Hessian ``D - A W A^T`` inverted by
   Woodbury on ``[P, G, N]`` arrays (``N`` quadrature nodes; the ``G x G`` system when ``G <= N``),
   first with a coarse quadrature rule and then with the fine one, batched over the rows on CUDA (row
   by row on a CPU, where padding costs more than batching saves: the numpy scan on views of the
   same memory and :func:`solvers.importance_weights.fit_sorted_row`, which fits both levels as
   slices of the ascending-ratio order, numpy's per-operation overhead being lower than torch's;
   repeated rows are fitted once);
3. the rule's own marginal ``r(lam) = q phi`` (quadrature error bound of
   :func:`solvers.importance_weights.quadrature_bound`, ~1e-14).

Verification: among the drafts in ``A`` (or all drafts if none is in ``A``) pick one with
probability proportional to ``lam`` (one uniform per row, inverse CDF over the ``k`` drafts), then
speculative sampling against ``p`` with ``r(lam)``: coin ``u r_Z < p_Z``, residual ``(p - r)^+`` by
the exponential race. Acceptance ``sum min(r(lam), p)`` = ``alpha*`` up to the fit tolerance.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ot_coupling.kernels.importance import (
    FINE_RULE,
    STATUS_MESSAGES,
    LevelFit,
    LevelProblems,
    PlanStatus,
    fit_levels,
)
from ot_coupling.kernels.selection import selection_scan
from solvers.importance_weights import fit_sorted_row, level_targets

from .base import Noise, TorchSelector
from .ops import coin, membership, race_sample, take
from .validation import prepare_pair

#: cap on the entries of one ``[P, G, N]`` array (levels are fitted in chunks below it)
MAX_ENTRIES = 30_000_000


@dataclass
class TorchImportancePlan(PlanStatus):
    """Fitted rule per row: ``weights``, ``top`` (level ``A``), ``marginal`` ``r(lam)`` (all ``[B, V]``),
    ``fit_error [B]`` (``||r(lam) - target||_1``), ``quad_error [B]`` (bound on ``||r_computed - r(lam)||_1``),
    ``iterations`` (Newton steps of the slowest chunk); ``converged [B]`` and the scipy-style
    ``success`` / ``status`` / ``message`` of the worst level fit
    (:class:`ot_coupling.kernels.importance.LevelFit`)."""

    weights: torch.Tensor
    top: torch.Tensor
    marginal: torch.Tensor
    fit_error: torch.Tensor
    quad_error: torch.Tensor
    iterations: int
    converged: torch.Tensor
    status: int = 0
    message: str = STATUS_MESSAGES[0]

    def _rows(self, idx) -> TorchImportancePlan:
        return TorchImportancePlan(self.weights[idx], self.top[idx], self.marginal[idx],
                                   self.fit_error[idx], self.quad_error[idx], self.iterations,
                                   self.converged[idx], self.status, self.message)


def _groups(rs: torch.Tensor, qs: torch.Tensor, level: torch.Tensor):
    """Groups of one level per row: runs of equal target ratio along the sorted order (equal
    ratios in different runs make separate groups with equal weights). Returns ``(group id per
    sorted token [-1 outside the level], mass [B, G], ratio [B, G])``, zero-mass padding."""
    member = level & (qs > 0)
    prev = torch.cat([torch.full_like(rs[:, :1], -1.0), rs[:, :-1]], 1)
    first = member & ((rs != prev) | ~torch.cat([torch.zeros_like(member[:, :1]), member[:, :-1]], 1))
    gid = torch.cumsum(first.long(), 1) - 1
    G = max(1, int(first.sum(1).max()))
    gid = torch.where(member, gid, torch.full_like(gid, -1))
    safe = gid.clamp(min=0)
    mass = torch.zeros(rs.shape[0], G, dtype=rs.dtype, device=rs.device)
    mass.scatter_add_(1, safe, torch.where(member, qs, torch.zeros_like(qs)))
    ratio = torch.ones(rs.shape[0], G + 1, dtype=rs.dtype, device=rs.device)  # last column: discard
    ratio.scatter_(1, torch.where(first, safe, torch.full_like(safe, G)), rs)
    ratio = ratio[:, :G]
    return gid, mass, torch.where(mass > 0, ratio, torch.ones_like(ratio))


def _on_host(x: torch.Tensor) -> bool:
    """Whether rows on ``x``'s device are fitted row by row on the host (a CPU), else batched on the
    device (tests switch this off to run the batched device path on a CPU)."""
    return x.device.type == "cpu"


def _fit_chunk(mass: torch.Tensor, ratio: torch.Tensor, floor: torch.Tensor, k: int, tol: float,
               max_iter: int) -> LevelFit:
    """The shared fit :func:`ot_coupling.kernels.importance.fit_levels` on the rows' device: on CUDA
    with torch, on a CPU with numpy views of the same memory (no copy), whose per-operation overhead
    is several times lower than torch's on the small ``[G, N]`` arrays of one level."""
    if not _on_host(mass):
        return fit_levels(LevelProblems(mass, ratio, floor, k), tol=tol, max_iter=max_iter)
    fit = fit_levels(LevelProblems(mass.numpy(), ratio.numpy(), floor.numpy(), k), tol=tol,
                     max_iter=max_iter)
    for name in ("weights", "phi", "l1_error", "quad_bound", "converged"):
        setattr(fit, name, torch.from_numpy(getattr(fit, name)))
    return fit


def importance_plan(p: torch.Tensor, q: torch.Tensor, k: int, *, tol: float = 1e-12,
                    max_iter: int = 60, resolution: float | None = 1e-2) -> TorchImportancePlan:
    """Fit the two-level importance rule on prepared ``[B, V]`` rows (float64 or float32 inputs;
    the fit runs in float64 and the results are cast back).

    ``resolution``: the levels aim at the coarse targets of
    :func:`solvers.importance_weights.level_targets` when reachable (computed per row with numpy on
    the host, in linear time).
    """
    dtype = p.dtype
    if _on_host(p) and p.shape[0] > 1:
        # on a CPU, padding every row to the largest group count and node count of the batch costs
        # more than it saves: fit row by row (identical results, the rows are independent), each
        # distinct row pair once and from its own rows, so a row's plan is the one-row call's
        first, inverse = _distinct_rows(p, q)
        plans = [importance_plan(p[b:b + 1], q[b:b + 1], k, tol=tol, max_iter=max_iter, resolution=resolution)
                 for b in first]
        worst = max(plans, key=lambda pl: pl.status)
        plan = TorchImportancePlan(*(torch.cat([getattr(pl, f) for pl in plans]) for f in
                                     ("weights", "top", "marginal", "fit_error", "quad_error")),
                                   max(pl.iterations for pl in plans),
                                   torch.cat([pl.converged for pl in plans]), worst.status, worst.message)
        return plan if inverse is None else plan._rows(inverse)
    p64, q64 = p.to(torch.float64), q.to(torch.float64)
    p64, q64 = _renormalise(p64), _renormalise(q64)  # exact in float64
    uniq, inverse = (torch.unique(torch.cat([p64, q64], 1), dim=0, return_inverse=True)
                     if p64.shape[0] > 1 else (p64, None))  # one row: nothing to dedupe (~1 ms)
    if uniq.shape[0] < p64.shape[0]:  # repeated rows are fitted once
        plan = importance_plan(uniq[:, : p.shape[1]].to(dtype), uniq[:, p.shape[1]:].to(dtype), k,
                               tol=tol, max_iter=max_iter, resolution=resolution)
        return plan._rows(inverse)
    B, V = p64.shape
    if _on_host(p64):
        # one row on a CPU: the numpy scan and fit (numpy views of the same memory), both levels as
        # slices of the ascending-ratio order, put back in token order by one scatter
        scan = selection_scan(p64.numpy(), q64.numpy(), k, marginal=False)
        row = fit_sorted_row(scan.ps[0], scan.qs[0], scan.ratio[0], int(scan.cut[0]),
                             float(scan.q_cut[0]), k, tol=tol, max_iter=max_iter, resolution=resolution,
                             with_aim=False)
        weights, marginal, _, top = row.in_token_order(scan.order[0])
        marginal *= q64[0].numpy()
        f64 = torch.float64
        return TorchImportancePlan(torch.from_numpy(weights)[None].to(dtype), torch.from_numpy(top)[None],
                                   torch.from_numpy(marginal)[None].to(dtype),
                                   torch.tensor([row.l1_error], dtype=f64), torch.tensor([row.quad], dtype=f64),
                                   row.iterations, torch.tensor([row.converged]), row.status, row.message)
    scan = selection_scan(p64, q64, k, marginal=False)  # the kernel shared with solvers.selection_law
    order, j, rs, qs, q_h = scan.order, scan.cut, scan.ratio, scan.qs, scan.q_cut
    idx = torch.arange(V, device=p64.device).unsqueeze(0)
    in_h = idx < j.unsqueeze(1)
    if resolution is not None and k > 1:
        ps_np, qs_np, rs_np = scan.ps.cpu().numpy(), qs.cpu().numpy(), rs.cpu().numpy().copy()
        for b, jb in enumerate(j.tolist()):
            n = int(np.count_nonzero(qs_np[b] > 0))          # q = 0 tokens come last
            for top, lo, hi in ((False, 0, min(jb, n)), (True, min(jb, n), n)):
                if hi > lo:
                    groups = level_targets(ps_np[b, lo:hi], qs_np[b, lo:hi], rs_np[b, lo:hi], k, top,
                                           resolution)
                    rs_np[b, lo:hi] = np.repeat(groups.values, groups.counts)
        rs = torch.as_tensor(rs_np, device=p64.device)
    weights_s = torch.zeros_like(p64)
    phi_s = torch.zeros_like(p64)
    fit_err = torch.zeros(B, dtype=torch.float64, device=p64.device)  # L1, summed over the levels
    quad = torch.zeros_like(fit_err)
    iterations = 0
    converged = torch.ones(B, dtype=torch.bool, device=p64.device)
    status, message = 0, STATUS_MESSAGES[0]
    for level, floor in ((~in_h, q_h), (in_h, torch.zeros_like(q_h))):
        gid, mass, ratio = _groups(rs, qs, level)
        lam = torch.zeros_like(mass)
        phi = torch.zeros_like(mass)
        nodes = FINE_RULE.head + FINE_RULE.panel * int(np.ceil(24 / FINE_RULE.width))
        rows = max(1, MAX_ENTRIES // (mass.shape[1] * nodes))
        for s in range(0, B, rows):
            sl = slice(s, s + rows)
            fit = _fit_chunk(mass[sl], ratio[sl], floor[sl], k, tol, max_iter)
            lam[sl], phi[sl], err, bound, it = fit.weights, fit.phi, fit.l1_error, fit.quad_bound, fit.iterations
            converged[sl] &= fit.converged.to(converged.device)
            if fit.status > status:
                status, message = fit.status, fit.message
            fit_err[sl] += err
            quad[sl] += mass[sl].sum(1) * bound
            iterations = max(iterations, it)
        safe = gid.clamp(min=0)
        member = gid >= 0
        weights_s = torch.where(member, lam.gather(1, safe), weights_s)
        phi_s = torch.where(member, phi.gather(1, safe), phi_s)
    inv = torch.empty_like(order).scatter_(1, order, torch.arange(V, device=order.device).expand(B, V))
    weights = take(weights_s, inv)
    top = take(~in_h & (qs > 0), inv)
    marginal = q64 * take(phi_s, inv)
    return TorchImportancePlan(weights.to(dtype), top, marginal.to(dtype), fit_err, quad, iterations,
                               converged, status, message)


class TorchOptimal(TorchSelector):
    """Batched optimal verifier (two-level importance sampling); registered as ``"optimal"``.

    Parameters
    ----------
    tol, max_iter: Newton tolerance on ``||r(lam) - target||_1`` per level and iteration cap.
    """

    name = "optimal"
    draft_law = "iid"
    #: with ``noise=None`` the ``[B, V]`` race is drawn only when some row rejects (on a CPU; CUDA
    #: always races, to avoid a sync): the same values as an eager draw, see ``_draw_lazily``
    lazy_noise = ("race",)

    def __init__(self, *, tol: float = 1e-12, max_iter: int = 60):
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self._cache: tuple[torch.Tensor, torch.Tensor, int, TorchImportancePlan] | None = None

    def plan(self, p, q, k: int, *, logits: bool = False) -> TorchImportancePlan:
        """The fitted rule per row (cached for the last ``(p, q, k)``)."""
        p_t, q_t = prepare_pair(p, q, logits=logits)
        return self._plan(p_t, q_t, _check_k(k))

    def _plan(self, p: torch.Tensor, q: torch.Tensor, k: int) -> TorchImportancePlan:
        """The plan of prepared rows, refitted unless ``(p, q, k)`` equal the last call's. ``p, q``
        come from :func:`~gpu_backend.validation.prepare_pair`, fresh tensors that are never handed
        out, so the cache keeps them without a copy."""
        c = self._cache
        if (c is None or c[2] != k or c[0].shape != p.shape or c[0].dtype != p.dtype
                or c[0].device != p.device or not _equal(c[0], p) or not _equal(c[1], q)):
            plan = importance_plan(p, q, k, tol=self.tol, max_iter=self.max_iter)
            if not plan.success:  # the output law stays p (the rule uses its own marginal); say so
                warnings.warn(f"TorchOptimal: the importance-weight fit did not converge on "
                              f"{int((~plan.converged).sum())} row(s) ({plan.message}); their "
                              f"acceptance may fall short of alpha* by up to {plan.value:.3g}",
                              RuntimeWarning, stacklevel=3)
            self._cache = (p, q, k, plan)
        return self._cache[3]

    def acceptance(self, p, q, k: int, *, logits: bool = False) -> torch.Tensor:
        """``sum_y min(r(lam)_y, p_y)`` per row (``alpha*`` up to the fit tolerance)."""
        p_t, q_t = prepare_pair(p, q, logits=logits)
        plan = self._plan(p_t, q_t, _check_k(k))
        return torch.minimum(plan.marginal, p_t).sum(1)

    def noise_shapes(self, batch: int, vocab: int, k: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``select [B]`` (the weighted pick), ``coins [B]`` (accept) uniforms, ``race [B, V]``
        exponentials (read only when some row rejects; drawn lazily with ``noise=None``)."""
        return {"select": ((batch,), "uniform"), "coins": ((batch,), "uniform"),
                "race": ((batch, vocab), "exponential")}

    def _verify(self, p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        plan = self._plan(p, q, drafts.shape[1])
        lam = take(plan.weights, drafts)
        top = take(plan.top, drafts)
        w = torch.where(top.any(1, keepdim=True), lam * top, lam)
        cum = torch.cumsum(w, 1)
        u = noise["select"].to(w.dtype) * cum[:, -1]
        pick = (cum <= u.unsqueeze(1)).sum(1).clamp(max=drafts.shape[1] - 1)
        z = take(drafts, pick)
        r = plan.marginal
        accept = coin(noise["coins"].to(p.dtype), take(p, z), take(r, z))
        if p.device.type == "cpu" and bool(accept.all()):
            tokens = z  # no row needs its residual: skip the [B, V] race (same output; no sync on CUDA)
        else:
            residual = race_sample(p - r, noise["race"].to(p.dtype), fallback=p, sparse=True)
            tokens = torch.where(accept, z, residual)
        return tokens, membership(tokens, drafts)


def _renormalise(x: torch.Tensor) -> torch.Tensor:
    """``x / x.sum(1)`` per row; rows already summing to exactly 1 are returned as they are (the
    same bits: ``x / 1 == x`` exactly in IEEE arithmetic), most rows that
    :func:`~gpu_backend.validation.prepare_probs` renormalised once."""
    sums = x.sum(1, keepdim=True)
    return x if x.device.type == "cpu" and bool((sums == 1).all()) else x / sums  # no sync on CUDA


def _distinct_rows(p: torch.Tensor, q: torch.Tensor) -> tuple[list[int], torch.Tensor | None]:
    """The first index of each distinct row pair ``(p[b], q[b])`` of CPU rows, and the index into
    that list of every row (``None`` when all rows are distinct). Candidates share a fingerprint
    (the sums of every fifth entry of ``p`` and of ``q``; equal rows have equal ones) and are then
    compared exactly, so a fingerprint that misses a repeat would only cost a second fit; tens of
    times cheaper than ``torch.unique`` on the ``[B, 2V]`` rows."""
    pn, qn = (x.detach().numpy() if x.dtype in (torch.float32, torch.float64)
              else x.detach().to(torch.float64).numpy() for x in (p, q))  # exact widening
    keys = np.stack([pn[:, ::5].sum(1), qn[:, ::5].sum(1)], 1).tolist()
    first: list[int] = []
    inverse: list[int] = []
    seen: dict[tuple[float, float], list[int]] = {}
    for b, key in enumerate(map(tuple, keys)):
        for j in seen.get(key, ()):
            if np.array_equal(pn[first[j]], pn[b]) and np.array_equal(qn[first[j]], qn[b]):
                inverse.append(j)
                break
        else:
            seen.setdefault(key, []).append(len(first))
            inverse.append(len(first))
            first.append(b)
    return first, (None if len(first) == len(inverse) else torch.tensor(inverse))


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``torch.equal`` (same shape and dtype assumed); on a CPU through numpy views of the same
    memory, several times faster on a ``[1, 49152]`` row."""
    if a.device.type == "cpu":
        return bool(np.array_equal(a.detach().numpy(), b.detach().numpy()))
    return torch.equal(a, b)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)
