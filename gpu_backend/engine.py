"""Multi-draft speculative decoding over Hugging Face causal LMs with a KV cache (SpecTr's tree).

One step (SpecTr, Sun et al. NeurIPS 2023, Algorithm "SpecTr" / docs/theory/token_verifiers.md#trees-of-drafts):

1. Draft: ``k`` sequences of length ``gamma`` from the draft model. The first tokens follow the
   selector's draft law (``selector.draft(q_1, k)``); each branch then continues independently,
   ``X^(j)_t ~ q(. | prefix, X^(j)_{<t})``. All ``k`` branches run as one batch on a KV cache that
   holds the committed prefix once.
2. Score: ONE target call on the distinct draft sequences (identical branches are deduplicated),
   giving ``p(. | prefix, X^(j)_{<t})`` for ``t = 1..gamma+1``.
3. Select, depth by depth: with ``alive`` the branches that agree with the tokens emitted so far,
   ``y_t = selector.verify(p_t, q_t, {X^(j)_t : j alive})``; stop at the first ``y_t`` outside the
   drafts (it came from the residual), else after ``gamma`` accepted tokens emit a bonus token from
   ``p_{gamma+1}``. Given the accepted prefix, the surviving branches' next tokens are again i.i.d.
   draws from ``q_t``, so any valid i.i.d. k-draft selector is exact at every depth with
   ``k_t = |alive|``. For selectors whose draft law is not i.i.d. (without replacement, greedy,
   hub pair) only one branch per distinct first token survives, so ``k_t = 1`` below depth 1 and
   the single-draft rule (``"speculative"``) is used there.

Sequence verifiers (``verifier=``): instead of step 3, the whole draft is handed to a batched
sequence verifier. For ``k = 1``: ``"speculative"`` (standard speculative sampling) or ``"block"``
(block verification, Sun et al. ICLR 2025), both through the flattened chain kernel
:func:`ot_coupling.kernels.chain.verify_chain`; for any ``k``: ``"bv"``, ``"gbv"``, ``"blend"``,
``"spectr"``, ``"traversal"`` of :mod:`gpu_backend.tree` (i.i.d. drafts). ``verifier=None`` keeps
the depth-by-depth selector walk above, except that ``k = 1`` with the ``"speculative"`` selector uses the chain kernel.

Exactness hinges on the draft law in the ratio being the law actually sampled from (the DeepSpec #31
and dflash #74 bugs). Here both ``p`` and ``q`` go through the single
:class:`Sampling` transform (temperature, top-k, top-p) and the engine samples every draft token from
the very tensor it later hands to the selector: branches sharing a prefix share one ``q`` row.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch

from ot_coupling.kernels.chain import verify_chain

from .base import TorchSelector
from .registry import get_selector
from .tree import VERIFIERS as TREE_VERIFIERS
from .tree import verify_tree_batched

#: the ``verifier=`` names of :class:`SpeculativeDecoder`
CHAIN_VERIFIERS = ("speculative", "block")


# ---------------------------------------------------------------------------------------- sampling
@dataclass(frozen=True)
class Sampling:
    """The logits -> probabilities transform applied identically to target and draft.

    ``temperature = 0`` is greedy decoding (a one-hot distribution on the first argmax);
    ``top_k`` keeps the ``top_k`` largest logits (ties with the k-th included); ``top_p`` keeps the
    smallest prefix of tokens sorted by probability whose mass reaches ``top_p`` (nucleus sampling,
    Holtzman et al. 2020). Probabilities are returned in float64.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t) or t < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {t!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"top_k must be None or an integer >= 1, got {self.top_k!r}")
        if self.top_p is not None and (isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float))
                                       or not 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be None or a number in (0, 1], got {self.top_p!r}")

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[..., V]`` (float64) from logits ``[..., V]``."""
        x = logits.to(torch.float64)
        if torch.isnan(x).any() or torch.isposinf(x).any():
            raise ValueError("logits contain NaN or +inf")
        if self.temperature == 0:
            return torch.nn.functional.one_hot(x.argmax(dim=-1), x.shape[-1]).to(torch.float64)
        x = x / self.temperature
        if self.top_k is not None and self.top_k < x.shape[-1]:
            kth = torch.topk(x, self.top_k, dim=-1).values[..., -1:]
            x = x.masked_fill(x < kth, -torch.inf)
        probs = torch.softmax(x, dim=-1)
        if self.top_p is not None and self.top_p < 1:
            sorted_p, order = torch.sort(probs, dim=-1, descending=True)
            before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass strictly before each token
            drop_sorted = before >= self.top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            probs = probs.masked_fill(drop, 0.0)
            probs = probs / probs.sum(dim=-1, keepdim=True)
        return probs


# ---------------------------------------------------------------------------------------- KV cache
class CachedLM:
    """A causal LM decoding one sequence with a KV cache that can fork into a batch of branches.

    State: the cache holds the committed tokens except ``pending`` (the last one or two, not yet
    fed). :meth:`extend` feeds tokens ``[m, L]`` to ``m`` branches (forking a batch-1 cache into
    ``m`` copies on first use) and returns logits ``[m, L, V]``; :meth:`commit` keeps one branch,
    crops its cache and sets the new pending tokens.
    """

    def __init__(self, model: torch.nn.Module, vocab_size: int | None = None):
        self.model = model
        self.vocab_size = vocab_size
        self.device = next(model.parameters()).device
        self.cache = None
        self.pending: list[int] = []
        self.calls = 0
        # transformers >= 5 names the KV cache ``cache`` (``past_key_values`` is deprecated there)
        forward = inspect.signature(type(model).forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"

    @property
    def cache_length(self) -> int:
        return 0 if self.cache is None else int(self.cache.get_seq_length())

    @property
    def batch(self) -> int:
        if self.cache is None or self.cache_length == 0:
            return 1
        return int(self.cache.layers[0].keys.shape[0]) if hasattr(self.cache, "layers") \
            else int(self.cache.key_cache[0].shape[0])

    def start(self, ids: list[int]) -> None:
        """Prefill all of ``ids`` but the last token, which becomes pending."""
        if len(ids) < 1:
            raise ValueError("input_ids must hold at least one token")
        self.cache, self.pending = None, [int(ids[-1])]
        if len(ids) > 1:
            self._forward(torch.tensor([ids[:-1]], device=self.device))

    @torch.no_grad()
    def _forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=tokens, use_cache=True, **{self._cache_arg: self.cache})
        self.cache = getattr(out, self._cache_arg)
        self.calls += 1
        logits = out.logits
        return logits if self.vocab_size is None else logits[..., : self.vocab_size]

    def extend(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens [m, L]`` (row ``i`` continues branch ``i``); returns logits ``[m, L, V]``."""
        m = tokens.shape[0]
        if self.batch != m:
            if self.batch != 1:
                raise ValueError(f"cache holds {self.batch} branches, got {m} rows")
            if self.cache is not None and self.cache_length > 0:
                self.cache.batch_repeat_interleave(m)
        return self._forward(tokens.to(self.device))

    def commit(self, row: int, keep: int, pending: list[int]) -> None:
        """Keep branch ``row`` with its first ``keep`` cached positions; ``pending`` are the committed
        tokens after them, to be fed next."""
        if self.cache is not None and self.cache_length > 0:
            if self.batch > 1:
                self.cache.batch_select_indices(torch.tensor([row], device=self.device))
            extra = self.cache_length - keep
            if extra < 0:
                raise ValueError(f"cannot keep {keep} positions of a cache of length {self.cache_length}")
            if extra:
                self.cache.crop(-extra)  # negative = tokens to remove (transformers 4.x and 5.x)
        self.pending = [int(t) for t in pending]


# ---------------------------------------------------------------------------------------- results
@dataclass
class StepStats:
    """One speculative step: ``accepted`` draft tokens emitted (0..gamma) plus one more token.

    ``alive[t]`` is the number of drafts verified at depth ``t + 1``; ``accepted_at[t]`` whether that
    depth accepted; ``predicted[t]`` the selector's exact acceptance there (with ``track_predicted``).
    """

    gamma: int
    accepted: int
    alive: list[int]
    accepted_at: list[bool]
    predicted: list[float] = field(default_factory=list)
    unique_branches: int = 1


@dataclass
class GenerationResult:
    """Tokens generated after the prompt and per-step statistics."""

    tokens: list[int]
    steps: list[StepStats]
    target_calls: int
    draft_calls: int

    @property
    def block_efficiency(self) -> float:
        """Tokens emitted per target call (including the prefill-free verification calls)."""
        return len(self.tokens) / max(1, self.target_calls)

    @property
    def accepted_lengths(self) -> np.ndarray:
        return np.array([s.accepted for s in self.steps], dtype=np.int64)

    def depth_acceptance(self) -> tuple[np.ndarray, np.ndarray]:
        """``(accepted, verified)`` counts per depth ``1..max gamma``."""
        depth = max((len(s.accepted_at) for s in self.steps), default=0)
        acc, ver = np.zeros(depth, np.int64), np.zeros(depth, np.int64)
        for s in self.steps:
            n = len(s.accepted_at)
            ver[:n] += 1
            acc[:n] += np.asarray(s.accepted_at, dtype=np.int64)
        return acc, ver

    def summary(self) -> dict:
        acc, ver = self.depth_acceptance()
        out = {"tokens": len(self.tokens), "steps": len(self.steps), "target_calls": self.target_calls,
               "draft_calls": self.draft_calls, "block_efficiency": self.block_efficiency,
               "mean_accepted": float(self.accepted_lengths.mean()) if self.steps else 0.0,
               "depth_acceptance": (acc / np.maximum(ver, 1)).tolist(), "depth_verified": ver.tolist()}
        if any(s.predicted for s in self.steps):
            out["measured_accepts"] = int(sum(sum(s.accepted_at) for s in self.steps))
            predicted = float(sum(sum(s.predicted) for s in self.steps))
            out["predicted_accepts"] = predicted if np.isfinite(predicted) else None  # None: not available
            out["verifications"] = int(ver.sum())
        return out


# ---------------------------------------------------------------------------------------- engine
class SpeculativeDecoder:
    """SpecTr-style multi-draft speculative decoding of a target LM with a draft LM.

    Parameters
    ----------
    target, draft : Hugging Face causal LMs (``model(input_ids, past_key_values, use_cache)``) with
        the same vocabulary.
    selector : a :class:`~gpu_backend.base.TorchSelector` or its registry name (``"kseq"``, ...).
    k : number of draft sequences; ``gamma``: their length.
    temperature, top_k, top_p : the :class:`Sampling` applied to both models' logits.
    vocab_size : keep only the first ``vocab_size`` logits (drop padded rows of an LM head).
    track_predicted : also record the selector's exact acceptance at every verified depth.
    verifier : ``None`` (the selector per depth), a chain rule ``"speculative"`` / ``"block"``
        (``k = 1``) or a tree verifier ``"bv"`` / ``"gbv"`` / ``"blend"`` / ``"spectr"`` /
        ``"traversal"`` (i.i.d. drafts; ``"spectr"`` uses ``selector`` at every depth).
    """

    def __init__(self, target, draft, selector: TorchSelector | str, k: int, gamma: int,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, *,
                 vocab_size: int | None = None, track_predicted: bool = False,
                 verifier: str | None = None):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1:
            raise ValueError(f"gamma must be an integer >= 1, got {gamma!r}")
        self.selector = get_selector(selector) if isinstance(selector, str) else selector
        if not isinstance(self.selector, TorchSelector):
            raise TypeError(f"selector must be a TorchSelector or a registry name, got {selector!r}")
        if self.selector.max_k is not None and k > self.selector.max_k:
            raise ValueError(f"selector {self.selector.name!r} supports k <= {self.selector.max_k}, got k={k}")
        self.single = self.selector if self.selector.draft_law == "iid" else get_selector("speculative")
        if verifier is None and k == 1 and self.selector.name == "speculative":
            verifier = "speculative"
        if verifier is not None:
            if verifier not in CHAIN_VERIFIERS + TREE_VERIFIERS:
                raise ValueError(f"verifier must be None or one of {CHAIN_VERIFIERS + TREE_VERIFIERS}, "
                                 f"got {verifier!r}")
            if verifier in CHAIN_VERIFIERS and k != 1:
                raise ValueError(f"verifier {verifier!r} verifies one draft (k = 1), got k={k}")
            if self.selector.draft_law != "iid":
                raise ValueError(f"sequence verifiers need i.i.d. drafts; selector {self.selector.name!r} "
                                 f"drafts {self.selector.draft_law!r}")
        self.verifier = verifier
        self.target, self.draft = target, draft
        self.k, self.gamma = k, gamma
        self.sampling = Sampling(temperature, top_k, top_p)
        self.vocab_size = vocab_size
        self.track_predicted = track_predicted

    def generate(self, input_ids, max_new_tokens: int, generator: torch.Generator | None = None, *,
                 eos_token_id: int | None = None) -> GenerationResult:
        """Generate up to ``max_new_tokens`` tokens after ``input_ids`` (a list, ``[n]`` or ``[1, n]``);
        stops after ``eos_token_id`` if given. The tokens follow the target's law exactly."""
        ids = _as_id_list(input_ids)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        tgt, drf = CachedLM(self.target, self.vocab_size), CachedLM(self.draft, self.vocab_size)
        tgt.start(ids)
        drf.start(ids)
        tgt.calls = drf.calls = 0  # count decoding calls, not the prefill
        out: list[int] = []
        steps: list[StepStats] = []
        while len(out) < max_new_tokens:
            gamma = min(self.gamma, max_new_tokens - len(out) - 1)
            new, stats = self._step(tgt, drf, gamma, generator)
            steps.append(stats)
            out.extend(new)
            if eos_token_id is not None and eos_token_id in new:
                out = out[: len(out) - len(new) + new.index(eos_token_id) + 1]
                break
        return GenerationResult(out[:max_new_tokens], steps, tgt.calls, drf.calls)

    # ------------------------------------------------------------------ one step
    def _step(self, tgt: CachedLM, drf: CachedLM, gamma: int,
              generator: torch.Generator | None) -> tuple[list[int], StepStats]:
        if gamma == 0:  # no room for drafts: one plain target sample
            p = self.sampling(tgt.extend(torch.tensor([tgt.pending]))[0, -1])
            y = int(torch.multinomial(p, 1, generator=generator))
            tgt.commit(0, tgt.cache_length, [y])
            drf.pending = drf.pending + [y]
            return [y], StepStats(0, 0, [], [])
        drafts, q_rows, q_index = self._draft(drf, gamma, generator)
        k = drafts.shape[0]
        # score the distinct branches in one target call
        unique, inverse = torch.unique(drafts, dim=0, return_inverse=True)
        n_pend = len(tgt.pending)
        feed = torch.cat([torch.tensor(tgt.pending).expand(unique.shape[0], n_pend), unique], dim=1)
        p_all = self.sampling(tgt.extend(feed)[:, n_pend - 1:])  # [m, gamma + 1, V]
        if self.verifier is not None:
            emitted, stats = self._verify_sequence(drafts, q_rows, q_index, p_all, inverse, generator)
            stats.unique_branches = int(unique.shape[0])
            return self._commit(tgt, drf, drafts, inverse, emitted, stats, gamma)
        alive = list(range(k))
        emitted: list[int] = []
        stats = StepStats(gamma, 0, [], [], unique_branches=int(unique.shape[0]))
        for t in range(gamma):
            row = alive[0]
            p_t = p_all[inverse[row], t]
            q_t = q_rows[t][q_index[t][row]]
            toks = drafts[alive, t]
            sel = self.selector if t == 0 else self.single
            if self.track_predicted:  # an exact acceptance over its budget must not end the run
                try:
                    stats.predicted.append(float(sel.acceptance(p_t[None], q_t[None], len(alive))[0]))
                except ValueError:
                    stats.predicted.append(float("nan"))
            y, ok = sel.verify(p_t[None], q_t[None], toks[None], generator)
            y, ok = int(y[0]), bool(ok[0])
            stats.alive.append(len(alive))
            stats.accepted_at.append(ok)
            emitted.append(y)
            if not ok:
                break
            alive = [j for j in alive if int(drafts[j, t]) == y]
            if t == 0 and self.selector.draft_law != "iid":
                alive = alive[:1]  # one branch per distinct first token (see module docstring)
        else:
            p_bonus = p_all[inverse[alive[0]], gamma]
            emitted.append(int(torch.multinomial(p_bonus, 1, generator=generator)))
        stats.accepted = len(emitted) - 1
        return self._commit(tgt, drf, drafts, inverse, emitted, stats, gamma, alive[0])

    def _verify_sequence(self, drafts, q_rows, q_index, p_all, inverse, generator):
        """The whole draft through a chain or tree verifier (see the module docstring)."""
        k, gamma = drafts.shape
        dev = p_all.device
        d = drafts.to(dev)
        P = p_all[inverse.to(dev)]                                             # [k, gamma + 1, V]
        Q = torch.stack([q_rows[t][q_index[t].to(dev)] for t in range(gamma)], dim=1)  # [k, gamma, V]
        if self.verifier in CHAIN_VERIFIERS:
            out, num = verify_chain(P[0], Q[0], d[0], torch.tensor([gamma], device=dev),
                                    rule=self.verifier, rng=generator)
        else:
            out, num = verify_tree_batched(self.verifier, d[None], P[None], Q[None], generator=generator,
                                           selector=self.selector)
        accepted = int(num[0])
        emitted = [int(v) for v in out[0, : accepted + 1].tolist()]
        depths = min(accepted + 1, gamma)
        agree = [int((drafts[:, :t] == torch.tensor(emitted[:t])).all(dim=1).sum()) for t in range(depths)]
        stats = StepStats(gamma, accepted, agree, [t < accepted for t in range(depths)])
        return emitted, stats

    def _commit(self, tgt, drf, drafts, inverse, emitted, stats, gamma, row=None):
        """Keep a branch whose drafts start with the accepted tokens in both caches."""
        accepted = len(emitted) - 1
        if row is None:
            match = (drafts[:, :accepted] == torch.tensor(emitted[:accepted], dtype=drafts.dtype)).all(dim=1)
            row = int(match.to(torch.int64).argmax())
        # target cache: committed + pending + the accepted drafts of `row`
        tgt.commit(int(inverse[row]), tgt.cache_length - gamma + accepted, [emitted[-1]])
        # draft cache: it fed pending + drafts[:, :gamma-1]
        fed = min(accepted, gamma - 1)
        drf.commit(row, drf.cache_length - (gamma - 1) + fed,
                   drafts[row, fed:accepted].tolist() + [emitted[-1]])
        return emitted, stats

    def _draft(self, drf: CachedLM, gamma: int, generator: torch.Generator | None):
        """``k`` branches of ``gamma`` draft tokens, the ``q`` rows they were sampled from, and for
        every depth the index of each branch's ``q`` row (branches with one prefix share one row)."""
        q1 = self.sampling(drf.extend(torch.tensor([drf.pending]))[0, -1])
        first = self.selector.draft(q1[None], self.k, generator)[0]
        k = first.numel()
        drafts = torch.empty(k, gamma, dtype=torch.long)
        drafts[:, 0] = first.cpu()
        q_rows, q_index = [q1[None]], [torch.zeros(k, dtype=torch.long)]
        for t in range(1, gamma):
            q_t = self.sampling(drf.extend(drafts[:, t - 1: t])[:, -1])  # [k, V]
            # branches with the same prefix use the same (representative) row
            _, group = torch.unique(drafts[:, :t], dim=0, return_inverse=True)
            rep = torch.full((int(group.max()) + 1,), k, dtype=torch.long).scatter_reduce(
                0, group, torch.arange(k), reduce="amin")
            idx = rep[group]
            q_rows.append(q_t)
            q_index.append(idx)
            drafts[:, t] = torch.multinomial(q_t[idx], 1, generator=generator)[:, 0].cpu()
        return drafts, q_rows, q_index


def _as_id_list(input_ids) -> list[int]:
    t = torch.as_tensor(input_ids)
    if t.ndim == 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 1 or t.numel() == 0 or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"input_ids must be a non-empty 1-D integer sequence or a [1, n] tensor, "
                         f"got shape {tuple(t.shape)} and dtype {t.dtype}")
    return [int(v) for v in t.tolist()]
