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

import io
import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from ot_coupling.files import atomic_write_bytes, atomic_write_text

from .engine import CachedLM, Sampling, SpeculativeDecoder
from .models import ModelPair, corpus_prompts, load_pair
from .registry import get_selector

DEFAULT_SELECTORS = ("kseq", "rrs", "rrs_wor", "naive", "optimal")


def collect_distributions(pair: ModelPair, steps: int, *, prompt: str | None = None,
                          sampling: Sampling | None = None, generator: torch.Generator | None = None,
                          progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
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
    from tqdm import tqdm

    for _ in tqdm(range(steps), desc="model steps", disable=not progress):
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


#: per-row budgets of the exact acceptances (see :func:`acceptance_route`)
RRS_WOR_MAX_PATHS = 200_000
GUMBEL_MAX_PAIRS = 2_000_000
#: draws per step of a sampled acceptance (with a 95% Wilson interval)
SAMPLED_DRAWS = 256


def acceptance_route(selector, k: int, vocab_size: int, *, temperature: float = 1.0,
                     top_k: int | None = None) -> tuple[str, str]:
    """How the acceptance of ``selector`` at ``k`` drafts over ``V = vocab_size`` tokens is computed,
    decided before any work from its known cost: ``(route, reason)`` with ``route`` one of

    * ``"exact"``: the selector's own exact acceptance (closed forms: speculative, naive, K-SEQ's
      rho* kernel, RRS with replacement, greedy, SpecHub; RRS without replacement up to its path
      budget, ``V^(k-2) <= RRS_WOR_MAX_PATHS`` per row; Gumbel at ``k = 1`` or ``V^2 <=
      GUMBEL_MAX_PAIRS``);
    * ``"closed_form"``: the optimal verifier, whose acceptance is ``alpha*(p, q, k)`` by construction
      (Sun et al., SpecTr, NeurIPS 2023; docs/theory/optimal_verifier.md): the prefix closed form,
      without fitting the plan (its samples still check it);
    * ``"sampled"``: the exact method is over budget; the acceptance is estimated from
      ``SAMPLED_DRAWS`` draws per step with a 95% Wilson interval, labelled ``"sampled"``;
    * ``"skip"``: the selector cannot run this case (``k`` above its ``max_k``; ``k`` distinct drafts
      from a draft law with fewer than ``k`` tokens of positive mass, e.g. greedy decoding).
    """
    V = int(vocab_size)
    if selector.max_k is not None and k > selector.max_k:
        return "skip", f"supports k <= {selector.max_k}"
    distinct = selector.draft_law in ("without_replacement", "greedy")
    if distinct and k > 1 and temperature == 0:
        return "skip", f"greedy decoding (temperature 0) leaves one token with q > 0, {k} distinct drafts impossible"
    if distinct and top_k is not None and k > top_k:
        return "skip", f"top_k={top_k} leaves fewer than {k} tokens for {k} distinct drafts"
    if selector.name == "optimal":
        return "closed_form", "the optimal verifier's acceptance is alpha* (closed form)"
    if selector.name == "rrs_wor" and k >= 3 and V ** (k - 2) > RRS_WOR_MAX_PATHS:
        return "sampled", (f"exact rrs_wor acceptance enumerates up to V^(k-2) = {V}^{k - 2} rejection paths "
                           f"(budget {RRS_WOR_MAX_PATHS:,}); sampled with a 95% interval")
    if selector.name == "gumbel" and k >= 2 and V * V > GUMBEL_MAX_PAIRS:
        return "sampled", (f"exact gumbel acceptance costs O(V^2) = {V * V:,} (budget {GUMBEL_MAX_PAIRS:,}); "
                           "sampled with a 95% interval")
    return "exact", ""


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (Wilson, JASA 1927)."""
    if n <= 0:
        return 0.0, 1.0
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _settings(pair: ModelPair, steps, ks, selectors, temperature, top_k, top_p, n_samples, lp_support,
              lp_max_k, seed, n_sampled) -> dict:
    return {"steps": steps, "ks": list(ks), "selectors": list(selectors), "temperature": temperature,
            "top_k": top_k, "top_p": top_p, "n_samples": n_samples, "lp_support": lp_support,
            "lp_max_k": lp_max_k, "seed": seed, "vocab_size": pair.vocab_size, "sampled_draws": n_sampled}


def verify_real_models(pair: ModelPair | str, steps: int = 64, ks: Sequence[int] = (1, 2, 4, 8),
                       selectors: Sequence[str] = DEFAULT_SELECTORS, *, prompt: str | None = None,
                       temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                       n_samples: int = 64, lp_support: int = 16, lp_max_k: int = 3,
                       seed: int = 0, n_sampled: int = SAMPLED_DRAWS, out_dir=None, resume: bool = False,
                       progress: bool = False, empirical_budget_s: float | None = None) -> dict:
    """Per decoding step and ``k``: the exact optimum, every selector's acceptance (routed by
    :func:`acceptance_route`: exact, closed form or sampled with a confidence interval) and its ratio
    to the optimum, and its empirical acceptance over ``n_samples`` sampled draft sets.

    Returns a JSON-ready dict with ``"pair"``, ``"settings"``, ``"records"`` (one per step and ``k``)
    ``"routes"`` (per selector and ``k``: how its acceptance was computed and why), ``"skipped"``
    and ``"summary"``.

    With ``out_dir`` every finished step is appended to ``out_dir/steps.jsonl`` as it completes and
    the target/draft laws are saved to ``out_dir/distributions.npz`` (so a later late error loses
    nothing); ``resume=True`` reuses both and computes only the missing steps (the settings must
    match those saved in ``out_dir/settings.json``). ``progress`` shows a tqdm bar on stderr.
    ``empirical_budget_s``: seconds each (selector, k) may spend on its empirical samples over all
    steps, and each (draft law, k) on its optimum (the without-replacement optimum is a quadrature,
    seconds per row at V = 49152: then ratios are taken at every ``m``-th step, ``"optimum_every"``); one whose first step costs more than its share is sampled at every ``m``-th step only
    (``m`` chosen from the measured time to fit the budget), noted as ``"empirical_every"`` in
    ``"routes"`` (e.g. the optimal verifier, which fits its plan per row, at large V). Cells whose
    acceptance is ``"sampled"`` need no separate empirical estimate and get none.
    """
    from solvers import optimal_acceptance, solve_membership_ot

    ks = [_check_int(k, "ks", 1) for k in ks]
    _check_int(n_samples, "n_samples", 0)
    _check_int(n_sampled, "n_sampled", 1)
    _check_int(lp_support, "lp_support", 1)
    _check_int(steps, "steps", 1)
    if not selectors:
        raise ValueError("selectors must name at least one selector")
    pair = load_pair(pair) if isinstance(pair, str) else pair
    sels, unavailable = _available_selectors(selectors)
    if not sels:
        raise ValueError(f"none of the selectors {list(selectors)} is available: {unavailable}")
    sampling = Sampling(temperature, top_k, top_p)
    settings = _settings(pair, steps, ks, selectors, temperature, top_k, top_p, n_samples, lp_support,
                         lp_max_k, seed, n_sampled)
    V = pair.vocab_size
    skipped = [{"selector": n, "k": None, "reason": r} for n, r in unavailable.items()]
    routes = {}
    for name, sel in sels.items():
        for k in ks:
            route, reason = acceptance_route(sel, k, V, temperature=temperature, top_k=top_k)
            routes[f"{name}@{k}"] = {"selector": name, "k": k, "route": route, "reason": reason}
            if route == "skip":
                skipped.append({"selector": name, "k": k, "reason": reason})
    store = _StepStore(out_dir, settings, resume) if out_dir is not None else None
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    loaded = store.load_distributions() if store is not None else None
    if loaded is None:
        P, Q, prompt_ids, tokens = collect_distributions(pair, steps, prompt=prompt, sampling=sampling,
                                                         generator=gen, progress=progress)
        if store is not None:
            store.save_distributions(P, Q, prompt_ids, tokens)
    else:
        P, Q, prompt_ids, tokens = loaded
    t_models = time.perf_counter() - t0
    Pn, Qn = P.numpy(), Q.numpy()
    done = store.finished() if store is not None else {}
    every: dict[str, int] = {}  # selector@k -> sample the empirical acceptance every m-th step
    optimum_every: dict[str, int] = {}  # law@k -> its optimum computed every m-th step (budget)
    from tqdm import tqdm

    bar = tqdm(range(steps), desc="verify steps", disable=not progress, initial=0)
    for i in bar:
        if i in done:
            continue
        step_gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * (i + 1))
        step_records = []
        p, q = Pn[i], Qn[i]
        for k in ks:
            opt_iid = optimal_acceptance(p, q, k, draft_law="iid")
            opt = {"iid": opt_iid}
            rec = {"step": i, "k": k, "token": tokens[i], "tv": 0.5 * float(np.abs(p - q).sum()),
                   "optimum": opt_iid, "optimum_by_law": opt, "selectors": {}}
            if k <= lp_max_k:
                p_m, q_m, _ = truncate_support(p, q, lp_support)
                lp = solve_membership_ot(p_m, q_m, k, draft_law="iid")
                rec["lp_truncated"] = {"support": int(p_m.size), "value": lp.value,
                                       "certificate": lp.certificate_value,
                                       "closed_form": optimal_acceptance(p_m, q_m, k),
                                       "seconds": lp.solve_seconds}
            for name, sel in sels.items():
                key = f"{name}@{k}"
                route = routes[key]["route"]
                if route == "skip":
                    continue
                law = sel.draft_law
                law_key = f"optimum:{law}@{k}"
                if law not in opt and i % every.get(law_key, 1) == 0:
                    t_o = time.perf_counter()
                    try:
                        opt[law] = optimal_acceptance(p, q, k, draft_law=law)
                    except ValueError as exc:
                        rec["selectors"][name] = {"error": _short(exc), "draft_law": law}
                        continue
                    spent = time.perf_counter() - t_o
                    if empirical_budget_s and law_key not in every:  # e.g. the wor quadrature at large V
                        every[law_key] = max(1, math.ceil(spent * steps / empirical_budget_s))
                        if every[law_key] > 1:
                            optimum_every[f"{law}@{k}"] = every[law_key]
                entry = _acceptance_entry(sel, P[i:i + 1], Q[i:i + 1], k, route, opt, n_sampled, step_gen)
                a = entry["acceptance"]
                if law in opt:  # the optimum of the selector's own draft law (every m-th step if costly)
                    entry["ratio"] = a / opt[law] if opt[law] > 0 else 1.0
                entry["draft_law"] = law
                if n_samples and route != "sampled" and i % every.get(key, 1) == 0:
                    t_s = time.perf_counter()
                    try:
                        entry["empirical"] = _empirical(sel, P[i:i + 1], Q[i:i + 1], k, n_samples, step_gen)
                    except ValueError as exc:
                        entry["empirical_error"] = _short(exc)
                    spent = time.perf_counter() - t_s
                    if empirical_budget_s and key not in every:
                        every[key] = max(1, math.ceil(spent * steps / empirical_budget_s))
                        if every[key] > 1:
                            routes[key]["empirical_every"] = every[key]
                rec["selectors"][name] = entry
            step_records.append(rec)
        if store is not None:
            store.append(i, step_records)
        done[i] = step_records
        bar.set_postfix_str(f"{time.perf_counter() - t0:.0f} s")
    records = [r for i in sorted(done) for r in done[i]]
    return {"pair": pair.name, "description": pair.description, "settings": settings,
            "prompt": pair.decode(prompt_ids), "continuation": pair.decode(tokens),
            "model_seconds": t_models, "seconds": time.perf_counter() - t0,
            "routes": list(routes.values()), "optimum_every": optimum_every, "records": records, "skipped": skipped,
            "summary": summarize(records, n_samples)}


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _acceptance_entry(sel, p: torch.Tensor, q: torch.Tensor, k: int, route: str, opt: dict,
                      n_sampled: int, gen: torch.Generator) -> dict:
    """One step's acceptance by its route; an exact method that still refuses this row (e.g. fewer
    than k tokens with q > 0 after top-p) falls back to sampling, with the reason."""
    if route == "closed_form":
        return {"acceptance": float(opt["iid"]), "method": "closed_form"}
    if route == "exact":
        try:
            return {"acceptance": float(sel.acceptance(p, q, k)[0]), "method": "exact"}
        except ValueError as exc:
            note = _short(exc)
    else:
        note = None
    rows_p, rows_q = p.expand(n_sampled, -1), q.expand(n_sampled, -1)
    _, accepted, _ = sel.sample(rows_p, rows_q, k, generator=gen)
    hits = int(accepted.sum())
    lo, hi = wilson_interval(hits, n_sampled)
    entry = {"acceptance": hits / n_sampled, "method": "sampled", "n": n_sampled, "ci95": [lo, hi]}
    if note:
        entry["note"] = note
    return entry


def _empirical(sel, p: torch.Tensor, q: torch.Tensor, k: int, n: int, gen: torch.Generator) -> float:
    """Mean membership of ``n`` sampled draft sets. A selector that fits a per-row plan and caches it
    for the last ``(p, q, k)`` (the optimal verifier) draws one row at a time, so the plan is fitted
    once instead of once per expanded row."""
    if hasattr(sel, "_plan"):
        hits = sum(bool(sel.sample(p, q, k, generator=gen)[1][0]) for _ in range(n))
        return hits / n
    _, accepted, _ = sel.sample(p.expand(n, -1), q.expand(n, -1), k, generator=gen)
    return float(accepted.double().mean())


class _StepStore:
    """``out_dir/settings.json``, ``distributions.npz`` and ``steps.jsonl`` (one line per finished step)."""

    def __init__(self, out_dir, settings: dict, resume: bool):
        import json
        from pathlib import Path

        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.settings_path = self.dir / "settings.json"
        self.steps_path = self.dir / "steps.jsonl"
        self.dist_path = self.dir / "distributions.npz"
        saved = json.loads(self.settings_path.read_text()) if self.settings_path.exists() else None
        if resume and saved is not None and saved != json.loads(json.dumps(settings)):
            diff = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            raise ValueError(f"--resume: {self.dir} holds a run with other settings ({', '.join(diff)}); "
                             "use the same options or another --out")
        if not resume:
            for path in (self.steps_path, self.dist_path):
                if path.exists():
                    path.unlink()
        atomic_write_text(self.settings_path, json.dumps(settings, indent=2))

    def load_distributions(self):
        if not self.dist_path.exists():
            return None
        data = np.load(self.dist_path)
        return (torch.from_numpy(data["P"]), torch.from_numpy(data["Q"]), data["prompt_ids"].tolist(),
                data["tokens"].tolist())

    def save_distributions(self, P, Q, prompt_ids, tokens) -> None:
        buf = io.BytesIO()
        np.savez(buf, P=P.numpy(), Q=Q.numpy(), prompt_ids=np.asarray(prompt_ids, dtype=np.int64),
                 tokens=np.asarray(tokens, dtype=np.int64))
        atomic_write_bytes(self.dist_path, buf.getvalue())

    def finished(self) -> dict[int, list[dict]]:
        import json

        done = {}
        if self.steps_path.exists():
            for line in self.steps_path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by an interruption: recompute that step
                    continue
                done[int(row["step"])] = row["records"]
        return done

    def append(self, step: int, records: list[dict]) -> None:
        import json

        line = json.dumps({"step": step, "records": records}, default=_json_default)
        with open(self.steps_path, "a") as fh:
            fh.write(line + "\n")
            fh.flush()


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def summarize(records: list[dict], n_samples: int) -> list[dict]:
    """Per (selector, k): ratio to the optimum (min, median), mean acceptance (``method``: exact,
    closed_form, sampled or mixed; for sampled steps a 95% interval of the mean), mean empirical
    acceptance and the z-score ``(sum empirical - sum acceptance) / sqrt(sum a (1 - a) / n)``
    (approximately N(0, 1) when the exact acceptances are right), the mean optimum and the
    truncated-LP agreement."""
    out = []
    for k in sorted({r["k"] for r in records}):
        rows = [r for r in records if r["k"] == k]
        names = list(dict.fromkeys(n for r in rows for n in r["selectors"]))
        lp_gap = [abs(r["lp_truncated"]["value"] - r["lp_truncated"]["closed_form"])
                  for r in rows if "lp_truncated" in r]
        for name in names:
            ent = [r["selectors"][name] for r in rows if "acceptance" in r["selectors"].get(name, {})]
            if not ent:
                continue
            a = np.array([e["acceptance"] for e in ent])
            ratio = np.array([e["ratio"] for e in ent if "ratio" in e])
            methods = sorted({e.get("method", "exact") for e in ent})
            row = {"selector": name, "k": k, "draft_law": ent[0]["draft_law"],
                   "method": methods[0] if len(methods) == 1 else "mixed(" + "+".join(methods) + ")",
                   "steps": len(ent), "optimum_mean": float(np.mean([r["optimum"] for r in rows])),
                   "acceptance_mean": float(a.mean()),
                   "ratio_min": float(ratio.min()) if ratio.size else None,
                   "ratio_median": float(np.median(ratio)) if ratio.size else None, "ratio_steps": int(ratio.size), "tv_mean": float(np.mean([r["tv"] for r in rows]))}
            sampled = [e for e in ent if e.get("method") == "sampled"]
            if sampled:  # normal interval of the mean of per-step sampled estimates
                var = sum(e["acceptance"] * (1 - e["acceptance"]) / e["n"] for e in sampled) / len(ent) ** 2
                half = 1.959963984540054 * math.sqrt(var)
                row["acceptance_ci95"] = [float(a.mean() - half), float(a.mean() + half)]
            if lp_gap:
                row["lp_vs_closed_form_max_gap"] = float(max(lp_gap))
            emp_rows = [e for e in ent if "empirical" in e]
            if n_samples and emp_rows:
                emp = np.array([e["empirical"] for e in emp_rows])
                ea = np.array([e["acceptance"] for e in emp_rows])
                var = float(np.sum(ea * (1 - ea)) / n_samples)
                row["empirical_mean"] = float(emp.mean())
                row["empirical_steps"] = len(emp_rows)
                row["z"] = float((emp.sum() - ea.sum()) / np.sqrt(var)) if var > 0 else 0.0
            out.append(row)
    return out


def block_efficiency_sweep(pair: ModelPair | str, selectors: Sequence[str], ks: Sequence[int],
                           gammas: Sequence[int], *, n_tokens: int = 64, prompts: int = 1,
                           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                           seed: int = 0, cell_budget_s: float | None = None,
                           probe: tuple[torch.Tensor, torch.Tensor] | None = None, out_dir=None,
                           resume: bool = False, progress: bool = False, skipped: list | None = None
                           ) -> list[dict]:
    """Run :class:`SpeculativeDecoder` for every (selector, k, gamma) on ``prompts`` pydoc prompts,
    ``n_tokens`` tokens each; one record per cell with block efficiency, mean accepted length,
    per-depth acceptance and measured vs predicted accepted drafts.

    Decided before each cell starts: cells the selector cannot run (:func:`acceptance_route` says
    ``"skip"``) are left out; the predicted accepts are tracked only where the selector's exact
    acceptance is within budget. With ``cell_budget_s`` and a ``probe`` row pair ``(p, q)`` (``[1, V]``
    each), one verification is timed per (selector, k) and cells whose ``n_tokens`` verifications
    would exceed the budget are skipped with the measured time (e.g. the optimal verifier, which fits
    its plan per row, at large V). Skipped cells and cells that fail are appended to ``skipped`` with
    the reason; finished cells are never lost: with ``out_dir`` each is appended to
    ``out_dir/engine.jsonl`` as it completes and ``resume`` skips those already there.
    """
    import json

    pair = load_pair(pair) if isinstance(pair, str) else pair
    _check_int(n_tokens, "n_tokens", 1)
    texts = corpus_prompts(_check_int(prompts, "prompts", 1))
    skipped = [] if skipped is None else skipped
    path = None
    done = {}
    if out_dir is not None:
        from pathlib import Path

        path = Path(out_dir) / "engine.jsonl"
        if resume and path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                done[(row["selector"], row["k"], row["gamma"])] = row
        elif path.exists():
            path.unlink()
    cells = []
    for name, sel in _available_selectors(selectors)[0].items():
        for k in ks:
            route, reason = acceptance_route(sel, k, pair.vocab_size, temperature=temperature, top_k=top_k)
            if route == "skip":
                continue
            if cell_budget_s is not None and probe is not None and not all(
                    (name, k, g) in done for g in gammas):
                per_call = _time_verify(sel, probe, k)
                if per_call * n_tokens * len(texts) > cell_budget_s:
                    skipped.append({"selector": name, "k": k, "reason":
                                    f"engine sweep: one verification takes {per_call:.2f} s at V={pair.vocab_size}, "
                                    f"over the {cell_budget_s:g} s budget per cell"})
                    continue
            cells += [(name, sel, k, gamma, route) for gamma in gammas]
    out = []
    from tqdm import tqdm

    for name, sel, k, gamma, route in tqdm(cells, desc="engine cells", disable=not progress):
        if (name, k, gamma) in done:
            out.append(done[(name, k, gamma)])
            continue
        try:
            out.append(_engine_cell(pair, texts, name, sel, k, gamma, n_tokens, temperature, top_k, top_p,
                                    seed, track=route in ("exact", "closed_form")))
        except ValueError as exc:  # record and go on: never lose the finished cells
            skipped.append({"selector": name, "k": k, "reason": f"engine gamma={gamma}: {_short(exc)}"})
            continue
        if path is not None:
            with open(path, "a") as fh:
                fh.write(json.dumps(out[-1], default=_json_default) + "\n")
    return out


def _time_verify(sel, probe, k: int) -> float:
    p, q = probe
    gen = torch.Generator().manual_seed(0)
    try:
        drafts = sel.draft(q, k, gen)
        t0 = time.perf_counter()
        sel.verify(p, q, drafts, gen)
        return time.perf_counter() - t0
    except ValueError:
        return 0.0  # the cell itself will report why it cannot run


def _engine_cell(pair, texts, name, sel, k, gamma, n_tokens, temperature, top_k, top_p, seed, track) -> dict:
    dec = SpeculativeDecoder(pair.target, pair.draft, sel, k, gamma, temperature, top_k, top_p,
                             vocab_size=pair.vocab_size, track_predicted=track)
    gen = torch.Generator().manual_seed(seed)
    tokens = calls = measured = verified = 0
    predicted: float | None = 0.0
    lengths = []
    t0 = time.perf_counter()
    for text in texts:
        res = dec.generate(pair.encode(text), n_tokens, generator=gen)
        s = res.summary()
        tokens += s["tokens"]
        calls += s["target_calls"]
        measured += s.get("measured_accepts", 0)
        p_s = s.get("predicted_accepts", 0.0)
        predicted = None if predicted is None or p_s is None else predicted + p_s
        verified += s.get("verifications", 0)
        lengths.extend(res.accepted_lengths.tolist())
    return {"selector": name, "k": k, "gamma": gamma, "tokens": tokens, "target_calls": calls,
            "block_efficiency": tokens / max(1, calls),
            # tokens per target call vary by round as (accepted + 1): its standard error over rounds
            "block_efficiency_se": float(np.std(lengths, ddof=1) / np.sqrt(len(lengths))) if len(lengths) > 1
            else float("nan"),
            "mean_accepted": float(np.mean(lengths)) if lengths else 0.0,
            "measured_accepts": measured, "predicted_accepts": predicted if track else None,
            "verifications": verified, "seconds": time.perf_counter() - t0}


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
