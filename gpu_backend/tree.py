"""Batched verification of ``k`` draft paths of length ``L`` per request, in torch.

Every verifier takes, for ``B`` requests,

* ``drafts [B, k, L]``: ``k`` i.i.d. draft paths per request;
* ``target [B, k, L + 1, V]``: ``target[b, j, t]`` = ``p(. | X^j_{<=t})`` (row ``L``: after the whole
  path, for the bonus token);
* ``draft [B, k, L, V]``: ``draft[b, j, t]`` = ``q(. | X^j_{<=t})``, the law ``X^j_{t+1}`` was drawn
  from;

(rows of paths sharing a prefix must be equal -- the engine shares them) and returns ``(tokens
[B, L + 1]`` padded with -1, ``num_accepted [B])``: the emitted sequence ``Y`` is an accepted drafted
prefix followed by one fresh token. All are lossless: ``Y`` followed by the target's continuation
has the target's sequence law (docs/theory/sequence_verifiers.md).

* ``"bv"`` -- block verification of the first path (Sun et al., ICLR 2025, Algorithm 2), through
  the batched chain kernel :func:`ot_coupling.kernels.chain.verify_chain`;
* ``"gbv"`` -- greedy multi-path block verification (Thomas & Pal, arXiv 2602.16961, 2026): select
  the lexicographic maximum of the ``k`` paths under the per-node strict total order
  ``(p_u(z)/q_u(z), z)``, then block-verify it against the law of that maximum, whose conditionals
  along the selected path are ``qt_u(z) = [(A + M cp(z))^k - (A + M cm(z))^k] / [(A + M)^k - A^k]``
  (``cm``/``cp`` = draft mass strictly below / up to ``z`` in the order, ``M`` = draft probability of
  the prefix, ``A`` = draft mass of paths ranked below every path through it). The powers are
  evaluated as ``(a - b) sum_i a^i b^(k-1-i)`` so no cancellation occurs;
* ``"blend"`` -- this project's rule (:class:`ot_coupling.sequence.lexmax.BlendRule`): GBV's path
  with probability ``lam`` (fixed from the root conditionals before the drafts are seen), else path
  1, block-verified against the blend of the order-statistic law and the draft law;
* ``"spectr"`` -- SpecTr's tree (Sun et al., NeurIPS 2023): a token-level selector (K-SEQ by
  default) at every depth on the surviving drafts, requests grouped by their number of survivors;
* ``"traversal"`` -- traversal verification (Weng et al., NeurIPS 2025, arXiv 2505.12398): the
  deduplicated tree with siblings in order of first appearance, leaves tested bottom-up with
  sequence-level weights, the parent's target law replaced by its residual and its draft law
  renormalised without the rejected sibling after every rejection. Sequential by nature: one
  request at a time, ``O(V)`` tensor work per visited node; :func:`traversal_law` integrates the
  coins out exactly (tests).
"""

from __future__ import annotations

import torch

from ot_coupling.kernels.chain import chain_plan, verify_chain

VERIFIERS = ("bv", "gbv", "blend", "spectr", "traversal")


def _check(drafts, target, draft):
    if drafts.ndim != 3:
        raise ValueError(f"drafts must be [B, k, L], got shape {tuple(drafts.shape)}")
    B, k, L = drafts.shape
    if target.ndim != 4 or tuple(target.shape[:3]) != (B, k, L + 1):
        raise ValueError(f"target must be [B, k, L + 1, V] = [{B}, {k}, {L + 1}, V], "
                         f"got {tuple(target.shape)}")
    V = target.shape[3]
    if tuple(draft.shape) != (B, k, L, V):
        raise ValueError(f"draft must be [B, k, L, V] = [{B}, {k}, {L}, {V}], got {tuple(draft.shape)}")
    if (drafts < 0).any() or (drafts >= V).any():
        raise ValueError(f"drafts holds token ids outside [0, {V})")
    return B, k, L, V


def _chain_inputs(path, target_rows, draft_rows):
    """Flattened chain layout of one path per request: ``path [B, L]``, ``target_rows [B, L + 1, V]``,
    ``draft_rows [B, L, V]``."""
    B, L = path.shape
    V = target_rows.shape[-1]
    cu = torch.arange(1, B + 1, device=path.device) * L
    return target_rows.reshape(B * (L + 1), V), draft_rows.reshape(B * L, V), path.reshape(-1), cu


def _pad(out, num, L):
    """Chain output ``[B, m + 1]`` -> ``[B, L + 1]``."""
    if out.shape[1] < L + 1:
        out = torch.cat([out, out.new_full((out.shape[0], L + 1 - out.shape[1]), -1)], dim=1)
    return out, num


# ------------------------------------------------------------------------------------------ BV
def verify_bv(drafts, target, draft, *, noise=None, generator=None):
    """Block verification of path 0 (see module docstring)."""
    B, k, L, V = _check(drafts, target, draft)
    out = verify_chain(*_chain_inputs(drafts[:, 0], target[:, 0], draft[:, 0]), rule="block",
                       noise=noise, rng=generator)
    return _pad(*out, L)


# ------------------------------------------------------------------------------------------ GBV
def _power_sum(a, b, k):
    """``sum_{i<k} a^i b^(k-1-i)`` (= ``(a^k - b^k)/(a - b)``), no cancellation."""
    out = torch.zeros_like(a + b)
    for i in range(k):
        out = out + a ** i * b ** (k - 1 - i)
    return out


def _order_key(p, q, state=None):
    """GBV's order key ``p/q`` (``q = 0``: +inf; such tokens carry no draft mass, so where they sit
    in the order changes no law); ties are broken by the token id."""
    return torch.where(q > 0, p / torch.where(q > 0, q, torch.ones_like(q)), torch.full_like(p, torch.inf))


#: order keys ``key(p [B, V], q [B, V], state) -> [B, V]`` of the lexicographic-maximum rules;
#: ``state`` = dict of ``[B]`` tensors ``depth, r, s, w`` and ints ``k, L`` (the numpy
#: ``ot_coupling.sequence.lexmax.NodeState``).
LEXMAX_KEYS = {"gbv": _order_key}


def lexmax_select(drafts, target, draft, key=_order_key, follow=None):
    """Index ``[B]`` of the lexicographic maximum path under the per-prefix strict orders
    ``(key, token)``, and the conditionals ``qt [B, L, V]`` of the law of that maximum along it
    (module docstring). With ``follow [B]`` (path indices) the conditionals of the maximum's law
    are computed along those paths instead (the blend rule verifies path 1 with them). With ``r = A/(A+M)``, ``s = M/(A+M)``:
    ``qt(z) = q(z) S(r + s cp, r + s cm) / S(1, r)``, ``S(a, b) = sum_{i<k} a^i b^(k-1-i)``,
    ``r' = (r + s cm(x)) / (r + s cp(x))``, ``s' = s q(x) / (r + s cp(x))`` -- no cancellation and
    no underflow of ``M`` along long paths."""
    B, k, L, V = _check(drafts, target, draft)
    dev = drafts.device
    ar = torch.arange(B, device=dev)
    alive = torch.ones(B, k, dtype=torch.bool, device=dev)
    dt = draft.dtype
    state = {"depth": 0, "r": torch.zeros(B, dtype=dt, device=dev), "s": torch.ones(B, dtype=dt, device=dev),
             "w": torch.ones(B, dtype=dt, device=dev), "k": k, "L": L}
    qt = torch.empty(B, L, V, dtype=dt, device=dev)
    for t in range(L):
        rep = alive.to(torch.int64).argmax(dim=1)                            # a path through u
        p, q = target[ar, rep, t], draft[ar, rep, t]
        kv = key(p, q, state)
        order = torch.sort(kv, dim=1, stable=True).indices                    # ascending (key, token)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(V, device=dev).expand(B, V))
        # selection: the alive child of highest rank
        x_all = drafts[:, :, t]
        if follow is None:
            rk = torch.where(alive, rank.gather(1, x_all), torch.full_like(x_all, -1))
            x = x_all.gather(1, rk.argmax(dim=1, keepdim=True))[:, 0]
        else:
            x = x_all.gather(1, follow[:, None])[:, 0]
        alive = alive & (x_all == x[:, None])
        # conditionals of the maximum's law at u
        qs = q.gather(1, order)
        cm = torch.empty_like(q).scatter_(1, order, torch.cumsum(qs, dim=1) - qs)
        r, s_ = state["r"][:, None], state["s"][:, None]
        row = q * _power_sum(r + s_ * (cm + q), r + s_ * cm, k) / _power_sum(torch.ones_like(r), r, k)
        row = torch.where(q > 0, row.clamp_min(0), torch.zeros_like(row))
        row = row / row.sum(dim=1, keepdim=True)
        qt[:, t] = row
        cmx, qx, px, qtx = (v.gather(1, x[:, None])[:, 0] for v in (cm, q, p, row))
        den = state["r"] + state["s"] * (cmx + qx)
        w = torch.where(qtx > 0, torch.minimum(state["w"] * px / torch.where(qtx > 0, qtx, 1.0),
                                               torch.ones_like(px)), torch.zeros_like(px))
        ok = den > 0  # else x is unreachable: any law below it is exact (never used)
        safe = torch.where(ok, den, torch.ones_like(den))
        state = {**state, "depth": t + 1,
                 "r": torch.where(ok, (state["r"] + state["s"] * cmx) / safe, torch.zeros_like(den)),
                 "s": torch.where(ok, state["s"] * qx / safe, torch.ones_like(den)),
                 "w": torch.where(ok, w, torch.zeros_like(w))}
    return alive.to(torch.int64).argmax(dim=1), qt


def gbv_select(drafts, target, draft):
    """:func:`lexmax_select` with GBV's order."""
    return lexmax_select(drafts, target, draft, _order_key)


def _law_along(path, target_rows, draft_rows, m: int):
    """Conditionals ``[B, L, V]`` of the law of the lexicographic maximum of ``m`` i.i.d. paths
    (GBV's order), along the given paths: :func:`lexmax_select` on ``m`` copies of each path (the
    law's conditionals depend only on ``p, q`` along the prefix and on ``m``; ``m = 1`` gives ``q``)."""
    B, L = path.shape
    _, qt = lexmax_select(path[:, None].expand(B, m, L), target_rows[:, None].expand(B, m, *target_rows.shape[1:]),
                          draft_rows[:, None].expand(B, m, *draft_rows.shape[1:]), _order_key)
    return qt


def blend_plan(drafts, target, draft, coins=None):
    """The blend rule of :class:`ot_coupling.sequence.lexmax.BlendRule` (this project's rule,
    docs/theory/sequence_verifiers.md). Component ``m`` is the lexicographic maximum (GBV's order)
    of the first ``m`` paths, with order-statistic law ``q~_m`` (``m = 1``: path 1, law ``q``). Per
    request, ``(m, lam)`` maximise the root overlap ``sum_z min(p, lam q~_{m+1} + (1 - lam) q~_m)``
    (numpy :func:`~ot_coupling.sequence.lexmax.blend_choice`, as :meth:`BlendRule.weight`). The selected path ``J`` is component ``m + 1``'s if
    ``coins < lam``, else component ``m``'s, block-verified against
    ``pi = b q~_{m+1} + (1 - b) q~_m`` along it (``b(()) = lam``, then the posterior weight).
    Returns ``(lam, m, J, pi)`` with coins, ``(lam, m, j_hi, j_lo, pi_hi, pi_lo)`` without."""
    from ot_coupling.sequence.lexmax import blend_choice

    B, k, L, V = _check(drafts, target, draft)
    dev, dt = drafts.device, draft.dtype
    ar = torch.arange(B, device=dev)
    comps = [lexmax_select(drafts[:, :m], target[:, :m], draft[:, :m], _order_key) for m in range(1, k + 1)]
    choices = [blend_choice(target[b, 0, 0].cpu().double().numpy(),
                            [qt[b, 0].cpu().double().numpy() for _, qt in comps]) for b in range(B)]
    m_sel, lam_sel = [m for m, _ in choices], [lam for _, lam in choices]
    m_t = torch.tensor(m_sel, device=dev)
    lam = torch.tensor(lam_sel, dtype=dt, device=dev)
    j_all = torch.stack([j for j, _ in comps], dim=1)                       # [B, k]
    j_lo = j_all.gather(1, (m_t - 1)[:, None])[:, 0]
    j_hi = j_all.gather(1, torch.clamp(m_t, max=k - 1)[:, None])[:, 0]

    def along(j):
        path, P, Q = drafts[ar, j], target[ar, j], draft[ar, j]
        lo = torch.empty(B, L, V, dtype=dt, device=dev)
        hi = torch.empty(B, L, V, dtype=dt, device=dev)
        for mv in sorted(set(m_sel)):
            idx = (m_t == mv).nonzero()[:, 0]
            lo[idx] = _law_along(path[idx], P[idx], Q[idx], mv)
            hi[idx] = _law_along(path[idx], P[idx], Q[idx], min(mv + 1, k))
        b = lam.clone()
        pi = torch.empty_like(lo)
        for t in range(L):
            row = b[:, None] * hi[:, t] + (1 - b[:, None]) * lo[:, t]
            pi[:, t] = row / row.sum(dim=1, keepdim=True)
            num = b * hi[:, t].gather(1, path[:, t:t + 1])[:, 0]
            den = num + (1 - b) * lo[:, t].gather(1, path[:, t:t + 1])[:, 0]
            b = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), b)
        return pi

    if coins is None:
        return lam, m_t, j_hi, j_lo, along(j_hi), along(j_lo)
    J = torch.where(coins < lam, j_hi, j_lo)
    return lam, m_t, J, along(J)


def verify_blend(drafts, target, draft, *, generator=None):
    """The blend rule (see :func:`blend_plan`), then block verification of the selected path."""
    B, k, L, V = _check(drafts, target, draft)
    coins = torch.rand(B, generator=generator, dtype=draft.dtype, device=draft.device)
    _, _, J, pi = blend_plan(drafts, target, draft, coins)
    ar = torch.arange(B, device=drafts.device)
    out = verify_chain(*_chain_inputs(drafts[ar, J], target[ar, J], pi), rule="block", rng=generator)
    return _pad(*out, L)


def blend_conditional_law(drafts, target, draft) -> list[dict]:
    """Exact law of :func:`verify_blend`'s output per request (selection coin and BV coins
    integrated out): ``lam`` x (BV of component ``m + 1``'s path) + ``(1 - lam)`` x (BV of
    component ``m``'s path)."""
    B, k, L, V = _check(drafts, target, draft)
    lam, _, j_hi, j_lo, pi_hi, pi_lo = blend_plan(drafts, target, draft)
    ar = torch.arange(B, device=drafts.device)
    laws_g = chain_laws(drafts[ar, j_hi], target[ar, j_hi], pi_hi)
    laws_0 = chain_laws(drafts[ar, j_lo], target[ar, j_lo], pi_lo)
    out = []
    for b in range(B):
        mix: dict = {}
        for wgt, law in ((float(lam[b]), laws_g[b]), (1 - float(lam[b]), laws_0[b])):
            for s_, pr in law.items():
                mix[s_] = mix.get(s_, 0.0) + wgt * pr
        out.append(mix)
    return out


def verify_gbv(drafts, target, draft, *, noise=None, generator=None, rule: str = "gbv"):
    """Greedy multi-path block verification (module docstring)."""
    B, k, L, V = _check(drafts, target, draft)
    j, qt = lexmax_select(drafts, target, draft, LEXMAX_KEYS[rule])
    ar = torch.arange(B, device=drafts.device)
    out = verify_chain(*_chain_inputs(drafts[ar, j], target[ar, j], qt), rule="block", noise=noise,
                       rng=generator)
    return _pad(*out, L)


def gbv_conditional_law(drafts, target, draft, rule: str = "gbv") -> list[dict]:
    """Exact law of :func:`verify_gbv`'s output per request (coins integrated out)."""
    B, k, L, V = _check(drafts, target, draft)
    j, qt = lexmax_select(drafts, target, draft, LEXMAX_KEYS[rule])
    ar = torch.arange(B, device=drafts.device)
    return chain_laws(drafts[ar, j], target[ar, j], qt)


def chain_laws(path, target_rows, draft_rows) -> list[dict]:
    """Exact block-verification law of each request's single path (from the chain kernel's plan)."""
    from ot_coupling.kernels.chain import final_weights

    B, L = path.shape
    P, Q, X, cu = _chain_inputs(path, target_rows, draft_rows)
    lay, h, w = chain_plan(P, Q, X, cu, "block")
    laws = [dict() for _ in range(B)]
    for t in range(L + 1):
        tau = torch.full((B,), t, dtype=torch.int64)
        W, Prow = final_weights(P, Q, cu, tau, w[:, t], lay)
        W = torch.where(W.sum(1, keepdim=True) > 0, W, Prow)
        W = W / W.sum(1, keepdim=True)
        later = torch.prod(1 - h[:, t + 1: L + 1], dim=1)
        pr = h[:, t] * later
        for b in range(B):
            pre = tuple(int(v) for v in path[b, :t])
            for y in torch.nonzero(W[b] > 0)[:, 0].tolist():
                laws[b][pre + (y,)] = laws[b].get(pre + (y,), 0.0) + float(pr[b] * W[b, y])
    return laws


# ------------------------------------------------------------------------------------------ SpecTr
def verify_spectr(drafts, target, draft, *, selector="kseq", generator=None):
    """SpecTr's tree with a token-level selector per depth, batched over requests (module doc)."""
    from .registry import get_selector

    sel = get_selector(selector) if isinstance(selector, str) else selector
    if sel.draft_law != "iid":
        raise ValueError(f"spectr needs an i.i.d. selector, {sel.name!r} uses {sel.draft_law!r}")
    B, k, L, V = _check(drafts, target, draft)
    dev = drafts.device
    alive = torch.ones(B, k, dtype=torch.bool, device=dev)
    running = torch.ones(B, dtype=torch.bool, device=dev)
    out = torch.full((B, L + 1), -1, dtype=torch.int64, device=dev)
    num = torch.zeros(B, dtype=torch.int64, device=dev)
    for t in range(L):
        count = alive.sum(dim=1)
        rep = alive.to(torch.int64).argmax(dim=1)                            # first surviving path
        for c in torch.unique(count[running]).tolist():
            rows = torch.nonzero(running & (count == c))[:, 0]
            # surviving tokens in path order: stable sort puts alive paths first
            order = torch.sort((~alive[rows]).to(torch.int8), dim=1, stable=True).indices[:, :c]
            toks = drafts[rows, :, t].gather(1, order)
            p = target[rows, rep[rows], t]
            q = draft[rows, rep[rows], t]
            y, ok = sel.verify(p, q, toks, generator)
            out[rows, t] = y
            num[rows] = t + ok.to(torch.int64)
            stop = rows[~ok]
            running[stop] = False
            keep = rows[ok]
            alive[keep] = alive[keep] & (drafts[keep, :, t] == y[ok][:, None])
    done = running  # all L depths accepted: bonus from the surviving path's last row
    if done.any():
        rows = torch.nonzero(done)[:, 0]
        rep = alive.to(torch.int64).argmax(dim=1)
        out[rows, L] = torch.multinomial(target[rows, rep[rows], L], 1, generator=generator)[:, 0]
        num[rows] = L
    return out, num


# ------------------------------------------------------------------------------------------ traversal
class _Tree:
    """The deduplicated draft tree of one request: nodes are prefixes, children in order of first
    appearance along the paths (path 0 first), rows ``P_u``, ``Q_u`` and weights ``w(u)``."""

    def __init__(self, drafts, target, draft):
        k, L = drafts.shape
        self.children: dict[tuple, list] = {(): []}
        self.P: dict[tuple, torch.Tensor] = {(): target[0, 0].clone()}
        self.Q: dict[tuple, torch.Tensor] = {(): draft[0, 0].clone()}
        self.last: dict[tuple, int] = {}
        for j in range(k):
            u: tuple = ()
            for t in range(L):
                z = int(drafts[j, t])
                v = u + (z,)
                if v not in self.children:
                    self.children[u].append(v)
                    self.children[v] = []
                    self.P[v] = target[j, t + 1].clone()
                    if t + 1 < L:
                        self.Q[v] = draft[j, t + 1].clone()
                u = v
        self.w: dict[tuple, float] = {(): 1.0}
        self._weights(())

    def _weights(self, u):
        """Top-down ``w(u.z) = min(1, w(u) P_u(z) / Q_u(z))`` below ``u``."""
        stack = [u]
        while stack:
            a = stack.pop()
            for v in self.children[a]:
                z = v[-1]
                num, den = self.w[a] * float(self.P[a][z]), float(self.Q[a][z])
                self.w[v] = 0.0 if num <= 0 else (1.0 if den <= 0 else min(1.0, num / den))
                stack.append(v)

    def copy(self):
        new = object.__new__(_Tree)
        new.children = {u: list(c) for u, c in self.children.items()}
        new.P, new.Q, new.w, new.last = dict(self.P), dict(self.Q), dict(self.w), {}
        return new

    def leftmost_leaf(self):
        u: tuple = ()
        while self.children[u]:
            u = self.children[u][0]
        return u

    def reject(self, v):
        """Remove leaf ``v`` and update its parent (module docstring)."""
        u, z = v[:-1], v[-1]
        self.children[u].remove(v)
        wu, Pu, Qu = self.w[u], self.P[u], self.Q[u]
        res = (wu * Pu - Qu).clamp_min(0)
        S = float(res.sum())
        if S > 0:
            self.P[u] = res / S
            self.w[u] = S / (S + 1.0 - wu)
        else:
            self.w[u] = 0.0
        Qn = Qu.clone()
        Qn[z] = 0
        tot = float(Qn.sum())
        self.Q[u] = Qn / tot if tot > 0 else Qn
        del self.children[v]
        self._weights(u)


def _sample_row(p, u: float) -> int:
    cdf = torch.cumsum(p, 0)
    i = int(torch.searchsorted(cdf, torch.tensor([u * float(cdf[-1])], dtype=cdf.dtype), right=True))
    if i >= p.numel():
        i = int(torch.nonzero(p > 0)[-1])
    return i


def verify_traversal(drafts, target, draft, *, generator=None):
    """Traversal verification, one request at a time (module docstring)."""
    B, k, L, V = _check(drafts, target, draft)
    out = torch.full((B, L + 1), -1, dtype=torch.int64)
    num = torch.zeros(B, dtype=torch.int64)
    for b in range(B):
        tree = _Tree(drafts[b].cpu(), target[b].cpu(), draft[b].cpu())
        while True:
            v = tree.leftmost_leaf()
            if v == () or float(torch.rand((), generator=generator, dtype=torch.float64)) < tree.w[v]:
                y = _sample_row(tree.P[v], float(torch.rand((), generator=generator, dtype=torch.float64)))
                seq = v + (y,)
                out[b, : len(seq)] = torch.tensor(seq)
                num[b] = len(v)
                break
            tree.reject(v)
    return out.to(drafts.device), num.to(drafts.device)


def traversal_law(drafts, target, draft) -> dict:
    """Exact law of :func:`verify_traversal`'s output for ONE request (``drafts [k, L]``,
    ``target [k, L + 1, V]``, ``draft [k, L, V]``), coins integrated out."""
    law: dict = {}

    def walk(tree, mass):
        v = tree.leftmost_leaf()
        acc = 1.0 if v == () else tree.w[v]
        if acc > 0:
            p = tree.P[v] / tree.P[v].sum()
            for y in torch.nonzero(p > 0)[:, 0].tolist():
                law[v + (y,)] = law.get(v + (y,), 0.0) + mass * acc * float(p[y])
        if acc < 1:
            nxt = tree.copy()
            nxt.reject(v)
            walk(nxt, mass * (1 - acc))

    walk(_Tree(drafts, target, draft), 1.0)
    return law


def verify_tree_batched(method: str, drafts, target, draft, *, generator=None, selector="kseq"):
    """Dispatch to one of :data:`VERIFIERS`."""
    if method == "bv":
        return verify_bv(drafts, target, draft, generator=generator)
    if method == "gbv":
        return verify_gbv(drafts, target, draft, generator=generator)
    if method == "blend":
        return verify_blend(drafts, target, draft, generator=generator)
    if method == "spectr":
        return verify_spectr(drafts, target, draft, selector=selector, generator=generator)
    if method == "traversal":
        return verify_traversal(drafts, target, draft, generator=generator)
    raise ValueError(f"method must be one of {VERIFIERS}, got {method!r}")


# ------------------------------------------------------------------------------------------ E|Y|
def chain_expected_length(path, target_rows, draft_rows):
    """Exact ``E[|Y| | X]`` ``[B]`` of block verification of ``path [B, L]`` against the draft law
    ``draft_rows`` (coins integrated out): ``sum_t (t + 1) h_t prod_{t<j<=L} (1 - h_j)``."""
    B, L = path.shape
    _, h, _ = chain_plan(*_chain_inputs(path, target_rows, draft_rows), "block")
    out = torch.zeros(B, dtype=h.dtype, device=h.device)
    for t in range(L + 1):
        out = out + (t + 1) * h[:, t] * torch.prod(1 - h[:, t + 1: L + 1], dim=1)
    return out


def expected_length(method: str, drafts, target, draft):
    """Exact ``E[|Y| | drafts]`` ``[B]`` for ``"bv"``, ``"gbv"``, ``"blend"``, ``"traversal"``."""
    B, k, L, V = _check(drafts, target, draft)
    ar = torch.arange(B, device=drafts.device)
    if method == "bv":
        return chain_expected_length(drafts[:, 0], target[:, 0], draft[:, 0])
    if method in LEXMAX_KEYS:
        j, qt = lexmax_select(drafts, target, draft, LEXMAX_KEYS[method])
        return chain_expected_length(drafts[ar, j], target[ar, j], qt)
    if method == "blend":
        lam, _, j_hi, j_lo, pi_hi, pi_lo = blend_plan(drafts, target, draft)
        return (lam * chain_expected_length(drafts[ar, j_hi], target[ar, j_hi], pi_hi)
                + (1 - lam) * chain_expected_length(drafts[ar, j_lo], target[ar, j_lo], pi_lo))
    if method == "traversal":
        return torch.tensor([traversal_expected_length(drafts[b].cpu(), target[b].cpu(), draft[b].cpu())
                             for b in range(B)], dtype=target.dtype)
    raise ValueError(f"no exact expected length for {method!r}")


def traversal_expected_length(drafts, target, draft) -> float:
    """Exact ``E[|Y| | drafts]`` of traversal verification for one request (no enumeration of the
    fresh token: ``|Y| = |v| + 1`` whatever it is)."""
    tree, mass, total = _Tree(drafts, target, draft), 1.0, 0.0
    while mass > 0:
        v = tree.leftmost_leaf()
        acc = 1.0 if v == () else tree.w[v]
        total += mass * acc * (len(v) + 1)
        if acc >= 1:
            break
        mass *= 1 - acc
        tree.reject(v)
    return total
