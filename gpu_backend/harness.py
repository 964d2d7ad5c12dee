"""Exact verification of multi-draft selectors on real language-model distributions.

For a target/draft pair (:func:`gpu_backend.models.load_pair`) the target generates a continuation
of a pydoc_data prompt; at every decoding step the harness takes the target law ``p`` and the draft
law ``q`` of the same context (full vocabulary, after the same :class:`~gpu_backend.engine.Sampling`
transform) and records, for every ``k``:

* the exact optimum ``alpha*(p, q, k)`` of membership-cost transport (Sun et al., SpecTr, NeurIPS
  2023, eq. (OTM)), from the min-cut prefix closed form at the full vocabulary
  (docs/theory/membership_ot.md#optimal-acceptance-by-min-cut; :func:`solvers.optimal_acceptance`) for each draft law in use;
* the exact LP (:func:`solvers.solve_membership_ot`) on a truncated support (the ``lp_support``
  tokens of largest ``p + q`` plus one "other" bucket holding the rest), next to the closed form on
  the same truncated pair: the two must agree to solver tolerance. Merging tokens can only help
  membership, so the truncated optimum is an upper bound on the full one (equal when nothing is
  merged);
* each selector's exact acceptance (``TorchSelector.acceptance``), its ratio to the optimum of its
  own draft law (SpecTr's K-SEQ guarantees ``>= 1 - 1/e`` against the i.i.d. optimum,
  docs/theory/token_verifiers.md#approximation-guarantee), and its empirical acceptance over ``n_samples`` sampled draft sets.

:func:`block_efficiency_sweep` runs the full engine (:class:`~gpu_backend.engine.SpeculativeDecoder`)
over a grid of selectors, ``k`` and ``gamma``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from .engine import CachedLM, Sampling, SpeculativeDecoder
from .models import ModelPair, corpus_prompts, load_pair
from .registry import get_selector

DEFAULT_SELECTORS = ("kseq", "rrs", "rrs_wor", "naive", "optimal")


def collect_distributions(pair: ModelPair, steps: int, *, prompt: str | None = None,
                          sampling: Sampling | None = None, generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """Sample ``steps`` tokens from the target (exactly, autoregressively with a KV cache) and return
    ``(P [steps, V], Q [steps, V], prompt_ids, tokens)``: the processed target and draft laws of
    every context on the way (float64)."""
    _check_int(steps, "steps", 1)
    sampling = sampling or Sampling()
    ids = pair.encode(prompt if prompt is not None else corpus_prompts(1)[0])
    tgt, drf = CachedLM(pair.target, pair.vocab_size), CachedLM(pair.draft, pair.vocab_size)
    tgt.start(ids)
    drf.start(ids)
    ps, qs, tokens = [], [], []
    for _ in range(steps):
        p = sampling(tgt.extend(torch.tensor([tgt.pending]))[0, -1])
        q = sampling(drf.extend(torch.tensor([drf.pending]))[0, -1])
        y = int(torch.multinomial(p, 1, generator=generator))
        for lm in (tgt, drf):
            lm.commit(0, lm.cache_length, [y])
        ps.append(p.cpu())
        qs.append(q.cpu())
        tokens.append(y)
    return torch.stack(ps), torch.stack(qs), ids, tokens


def truncate_support(p: np.ndarray, q: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p_m, q_m, tokens)``: the ``m`` tokens of largest ``p + q`` and, if any mass is left, one
    extra "other" cell holding the rest of both laws."""
    order = np.argsort(-(p + q), kind="stable")[:m]
    p_m, q_m = p[order], q[order]
    rest_p, rest_q = max(0.0, 1.0 - p_m.sum()), max(0.0, 1.0 - q_m.sum())
    if m < p.size:
        p_m, q_m = np.append(p_m, rest_p), np.append(q_m, rest_q)
    return p_m / p_m.sum(), q_m / q_m.sum(), order


def verify_real_models(pair: ModelPair | str, steps: int = 64, ks: Sequence[int] = (1, 2, 4, 8),
                       selectors: Sequence[str] = DEFAULT_SELECTORS, *, prompt: str | None = None,
                       temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                       n_samples: int = 64, lp_support: int = 16, lp_max_k: int = 3,
                       seed: int = 0) -> dict:
    """Per decoding step and ``k``: the exact optimum, every selector's exact and empirical
    acceptance and its ratio to the optimum (see the module docstring).

    Returns a JSON-ready dict with ``"pair"``, ``"settings"``, ``"records"`` (one per step and ``k``)
    and ``"summary"`` (per selector and ``k``: min/median ratio, mean exact and empirical
    acceptance and the z-score of their difference). Selectors that do not support a ``k`` (e.g.
    ``"speculative"`` beyond 1, ``"spechub"`` beyond 2) or have no exact acceptance at this size are
    listed in ``"skipped"`` with the reason.
    """
    from solvers import optimal_acceptance, solve_membership_ot

    pair = load_pair(pair) if isinstance(pair, str) else pair
    ks = [_check_int(k, "ks", 1) for k in ks]
    _check_int(n_samples, "n_samples", 0)
    _check_int(lp_support, "lp_support", 1)
    if not selectors:
        raise ValueError("selectors must name at least one selector")
    sels, unavailable = _available_selectors(selectors)
    if not sels:
        raise ValueError(f"none of the selectors {list(selectors)} is available: {unavailable}")
    sampling = Sampling(temperature, top_k, top_p)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    P, Q, prompt_ids, tokens = collect_distributions(pair, steps, prompt=prompt, sampling=sampling, generator=gen)
    t_models = time.perf_counter() - t0
    Pn, Qn = P.numpy(), Q.numpy()
    records, skipped = [], [{"selector": n, "k": None, "reason": r} for n, r in unavailable.items()]
    for k in ks:
        exact = {}
        for name, sel in sels.items():
            if sel.max_k is not None and k > sel.max_k:
                skipped.append({"selector": name, "k": k, "reason": f"supports k <= {sel.max_k}"})
                continue
            try:
                exact[name] = sel.acceptance(P, Q, k).numpy()
            except ValueError as exc:  # no exact acceptance at this size (e.g. rrs_wor at large k V)
                skipped.append({"selector": name, "k": k, "reason": str(exc)})
        active = {n: sels[n] for n in exact}
        laws = sorted({s.draft_law for s in active.values()} | {"iid"})
        for i in range(steps):
            p, q = Pn[i], Qn[i]
            opt = {law: optimal_acceptance(p, q, k, drafts=law) for law in laws}
            rec = {"step": i, "k": k, "token": tokens[i], "tv": 0.5 * float(np.abs(p - q).sum()),
                   "optimum": opt["iid"], "optimum_by_law": opt, "selectors": {}}
            if k <= lp_max_k:
                p_m, q_m, _ = truncate_support(p, q, lp_support)
                lp = solve_membership_ot(p_m, q_m, k, drafts="iid")
                rec["lp_truncated"] = {"support": int(p_m.size), "value": lp.value,
                                       "certificate": lp.certificate_value,
                                       "closed_form": optimal_acceptance(p_m, q_m, k),
                                       "seconds": lp.solve_seconds}
            for name, sel in active.items():
                a = float(exact[name][i])
                entry = {"acceptance": a, "ratio": a / opt[sel.draft_law] if opt[sel.draft_law] > 0 else 1.0,
                         "draft_law": sel.draft_law}
                if n_samples:
                    rows_p = P[i:i + 1].expand(n_samples, -1)
                    rows_q = Q[i:i + 1].expand(n_samples, -1)
                    _, accepted, _ = sel.sample(rows_p, rows_q, k, generator=gen)
                    entry["empirical"] = float(accepted.double().mean())
                rec["selectors"][name] = entry
            records.append(rec)
    return {"pair": pair.name, "description": pair.description,
            "settings": {"steps": steps, "ks": ks, "selectors": list(selectors), "temperature": temperature,
                         "top_k": top_k, "top_p": top_p, "n_samples": n_samples, "lp_support": lp_support,
                         "lp_max_k": lp_max_k, "seed": seed, "vocab_size": pair.vocab_size},
            "prompt": pair.decode(prompt_ids), "continuation": pair.decode(tokens),
            "model_seconds": t_models, "seconds": time.perf_counter() - t0,
            "records": records, "skipped": skipped, "summary": summarize(records, n_samples)}


def summarize(records: list[dict], n_samples: int) -> list[dict]:
    """Per (selector, k): ratio to the optimum (min, median), mean exact / empirical acceptance, the
    z-score ``(sum empirical - sum exact) / sqrt(sum a (1 - a) / n)`` (approximately N(0, 1) when the
    exact acceptances are right), and the mean optimum and truncated-LP agreement."""
    out = []
    for k in sorted({r["k"] for r in records}):
        rows = [r for r in records if r["k"] == k]
        names = list(rows[0]["selectors"]) if rows else []
        lp_gap = [abs(r["lp_truncated"]["value"] - r["lp_truncated"]["closed_form"])
                  for r in rows if "lp_truncated" in r]
        for name in names:
            a = np.array([r["selectors"][name]["acceptance"] for r in rows])
            ratio = np.array([r["selectors"][name]["ratio"] for r in rows])
            row = {"selector": name, "k": k, "draft_law": rows[0]["selectors"][name]["draft_law"],
                   "steps": len(rows), "optimum_mean": float(np.mean([r["optimum"] for r in rows])),
                   "acceptance_mean": float(a.mean()), "ratio_min": float(ratio.min()),
                   "ratio_median": float(np.median(ratio)), "tv_mean": float(np.mean([r["tv"] for r in rows]))}
            if lp_gap:
                row["lp_vs_closed_form_max_gap"] = float(max(lp_gap))
            if n_samples:
                emp = np.array([r["selectors"][name]["empirical"] for r in rows])
                var = float(np.sum(a * (1 - a)) / n_samples)
                row["empirical_mean"] = float(emp.mean())
                row["z"] = float((emp.sum() - a.sum()) / np.sqrt(var)) if var > 0 else 0.0
            out.append(row)
    return out


def block_efficiency_sweep(pair: ModelPair | str, selectors: Sequence[str], ks: Sequence[int],
                           gammas: Sequence[int], *, n_tokens: int = 64, prompts: int = 1,
                           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                           seed: int = 0) -> list[dict]:
    """Run :class:`SpeculativeDecoder` for every (selector, k, gamma) on ``prompts`` pydoc prompts,
    ``n_tokens`` tokens each; one record per cell with block efficiency, mean accepted length,
    per-depth acceptance and measured vs predicted accepted drafts."""
    pair = load_pair(pair) if isinstance(pair, str) else pair
    _check_int(n_tokens, "n_tokens", 1)
    texts = corpus_prompts(_check_int(prompts, "prompts", 1))
    out = []
    for name, sel in _available_selectors(selectors)[0].items():
        for k in ks:
            if sel.max_k is not None and k > sel.max_k:
                continue
            for gamma in gammas:
                dec = SpeculativeDecoder(pair.target, pair.draft, sel, k, gamma, temperature, top_k, top_p,
                                         vocab_size=pair.vocab_size, track_predicted=True)
                gen = torch.Generator().manual_seed(seed)
                tokens = calls = measured = verified = 0
                predicted = 0.0
                lengths = []
                t0 = time.perf_counter()
                for text in texts:
                    res = dec.generate(pair.encode(text), n_tokens, generator=gen)
                    s = res.summary()
                    tokens += s["tokens"]
                    calls += s["target_calls"]
                    measured += s.get("measured_accepts", 0)
                    predicted += s.get("predicted_accepts", 0.0)
                    verified += s.get("verifications", 0)
                    lengths.extend(res.accepted_lengths.tolist())
                out.append({"selector": name, "k": k, "gamma": gamma, "tokens": tokens, "target_calls": calls,
                            "block_efficiency": tokens / max(1, calls),
                            "mean_accepted": float(np.mean(lengths)) if lengths else 0.0,
                            "measured_accepts": measured, "predicted_accepts": predicted,
                            "verifications": verified, "seconds": time.perf_counter() - t0})
    return out


def _available_selectors(names: Sequence[str]) -> tuple[dict, dict]:
    """``({name: selector}, {name: reason})``: unknown names raise ValueError; registered selectors
    whose module is not installed yet are reported instead of failing the whole run."""
    found, missing = {}, {}
    for name in names:
        try:
            found[name] = get_selector(name)
        except ImportError as exc:
            missing[name] = f"not available ({exc})"
    return found, missing


def _check_int(x, name: str, low: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {x!r}")
    return int(x)
