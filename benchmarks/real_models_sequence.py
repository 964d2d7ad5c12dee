"""Sequence verifiers on a real pair (SmolLM2-135M target, 4-bit draft): E|Y| with common random
numbers and a confidence interval, and the per-round verification cost next to K-SEQ's tree.

One round per prompt (``--rounds`` pydoc prompts): the draft model samples ``k_max`` i.i.d. paths of
length ``L_max`` (one batched, KV-cached draft pass), the target scores them in one call, giving
``target [k, L + 1, V]`` and ``draft [k, L, V]``. Every configuration ``(k, L)`` with ``k <= k_max``,
``L <= L_max`` uses the first ``k`` paths truncated to ``L`` tokens (again i.i.d. draft paths), and
every verifier sees the same drafts (common random numbers). For BV, GBV, the blend rule and
traversal the conditional ``E[|Y| | drafts]`` is exact (coins integrated out,
:func:`gpu_backend.tree.expected_length`); for SpecTr's tree with K-SEQ it is the mean of
``--coin-draws`` batched runs on the same drafts. The CI is mean +- 1.96 sd / sqrt(rounds) over
rounds; differences to K-SEQ are paired (same drafts) and get their own CI.

    python benchmarks/real_models_sequence.py [--rounds 64] [--k 2,4] [--L 2,4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from gpu_backend.engine import Sampling
from gpu_backend.models import corpus_prompts, load_pair
from gpu_backend.tree import expected_length, verify_tree_batched

EXACT = ("bv", "gbv", "blend", "traversal")


@torch.no_grad()
def draft_and_score(pair, prompt_ids, k, L, sampling, gen):
    """``drafts [k, L]``, ``target [k, L + 1, V]``, ``draft [k, L, V]`` for one prompt."""
    V = pair.vocab_size
    ids = torch.tensor([prompt_ids] * k)
    out = pair.draft(input_ids=ids, use_cache=True)
    cache = out.past_key_values
    q_rows, toks = [], []
    logits = out.logits[:, -1, :V]
    for t in range(L):
        q = sampling(logits)
        x = torch.multinomial(q, 1, generator=gen)
        q_rows.append(q)
        toks.append(x)
        if t + 1 < L:
            out = pair.draft(input_ids=x, past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1, :V]
    drafts = torch.cat(toks, dim=1)
    P = sampling(pair.target(input_ids=torch.cat([ids, drafts], dim=1)).logits[:, len(prompt_ids) - 1:, :V])
    return drafts, P, torch.stack(q_rows, dim=1)


def ci(x):
    x = np.asarray(x, dtype=float)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else float("nan")
    return float(x.mean()), float(half)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="smollm2")
    ap.add_argument("--rounds", type=int, default=64)
    ap.add_argument("--k", default="2,4")
    ap.add_argument("--L", default="2,4")
    ap.add_argument("--coin-draws", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verifiers", default=",".join(EXACT), help="exact-E|Y| verifiers (K-SEQ always runs)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ks, Ls = [int(v) for v in args.k.split(",")], [int(v) for v in args.L.split(",")]
    t0 = time.perf_counter()
    pair = load_pair(args.pair)
    print(f"pair {pair.name}: {pair.description}; loaded in {time.perf_counter() - t0:.0f} s")
    sampling, gen = Sampling(), torch.Generator().manual_seed(args.seed)
    exact = tuple(v for v in args.verifiers.split(",") if v)
    methods = ("spectr",) + exact
    eyl = {(k, L, m): [] for k in ks for L in Ls for m in methods}
    cost = {(k, L, m): [] for k in ks for L in Ls for m in methods}
    t_start = time.perf_counter()
    for r, prompt in enumerate(corpus_prompts(args.rounds, seed=args.seed)):
        d, P, Q = draft_and_score(pair, pair.encode(prompt), max(ks), max(Ls), sampling, gen)
        for k in ks:
            for L in Ls:
                dk, Pk, Qk = d[None, :k, :L], P[None, :k, : L + 1], Q[None, :k, :L]
                for m in exact:
                    eyl[(k, L, m)].append(float(expected_length(m, dk, Pk, Qk)[0]))
                    t1 = time.perf_counter()
                    verify_tree_batched(m, dk, Pk, Qk, generator=gen)
                    cost[(k, L, m)].append(time.perf_counter() - t1)
                n = args.coin_draws
                _, num = verify_tree_batched("spectr", dk.expand(n, -1, -1), Pk.expand(n, -1, -1, -1),
                                             Qk.expand(n, -1, -1, -1), generator=gen)
                eyl[(k, L, "spectr")].append(float(num.double().mean()) + 1)
                t1 = time.perf_counter()
                verify_tree_batched("spectr", dk, Pk, Qk, generator=gen)
                cost[(k, L, "spectr")].append(time.perf_counter() - t1)
        if (r + 1) % 4 == 0:
            print(f"  {r + 1}/{args.rounds} rounds, {time.perf_counter() - t_start:.0f} s", flush=True)
    print(f"\n{args.rounds} rounds (one per prompt), V={pair.vocab_size}, float64 probabilities, "
          f"{torch.get_num_threads()} torch thread(s); E|Y| = mean +- 95% CI; "
          "diff = paired vs spectr (K-SEQ)")
    print(f"{'k':>2} {'L':>2} {'verifier':<10} {'E|Y|':>16} {'diff vs K-SEQ':>18} "
          f"{'ms/round (median)':>18} {'/ K-SEQ':>8}")
    rows = []
    for k in ks:
        for L in Ls:
            base, base_cost = eyl[(k, L, "spectr")], np.median(cost[(k, L, "spectr")])
            for m in methods:
                mean, half = ci(eyl[(k, L, m)])
                dm, dh = ci(np.array(eyl[(k, L, m)]) - np.array(base))
                c = float(np.median(cost[(k, L, m)]))
                rows.append({"k": k, "L": L, "verifier": m, "E|Y|": mean, "ci95": half, "diff_vs_kseq": dm,
                             "diff_ci95": dh, "ms_per_round": 1e3 * c, "cost_vs_kseq": c / base_cost,
                             "exact_conditional": m in exact})
                print(f"{k:>2} {L:>2} {m:<10} {mean:>8.4f} +- {half:.4f} {dm:>+9.4f} +- {dh:.4f} "
                      f"{1e3 * c:>18.2f} {c / base_cost:>7.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"pair": pair.name, "description": pair.description, "rounds": args.rounds,
                       "coin_draws_spectr": args.coin_draws, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
