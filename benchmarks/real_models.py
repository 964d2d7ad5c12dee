"""Real-model report: selectors vs the exact optimum on SmolLM2-135M (or another pair), and the
SpecTr engine's block efficiency and wall clock against plain autoregressive decoding.

    python benchmarks/real_models.py                      # SmolLM2, 64 steps, k = 1,2,4,8,16
    python benchmarks/real_models.py --pair bytes --steps 32 --k 1,2,3

Prints, per selector and k: the optimum, mean acceptance, ratio to the optimum (min, median),
sampled vs exact acceptance (z-score); then block efficiency per (selector, k, gamma) and the
engine's tokens/s as a ratio to the autoregressive baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from gpu_backend.engine import CachedLM, Sampling
from gpu_backend.harness import block_efficiency_sweep, verify_real_models
from gpu_backend.models import corpus_prompts, load_pair


def autoregressive_seconds(pair, n_tokens: int, prompt: str, seed: int = 0) -> float:
    """Wall clock of plain target sampling with a KV cache (the baseline)."""
    lm, sampling = CachedLM(pair.target, pair.vocab_size), Sampling()
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    lm.start(pair.encode(prompt))
    for _ in range(n_tokens):
        p = sampling(lm.extend(torch.tensor([lm.pending]))[0, -1])
        lm.commit(0, lm.cache_length, [int(torch.multinomial(p, 1, generator=gen))])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="smollm2")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--k", default="1,2,4,8,16")
    ap.add_argument("--selectors", default="speculative,kseq,rrs,rrs_wor,naive,optimal")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--engine-selectors", default="kseq,rrs")
    ap.add_argument("--engine-k", default="1,2,4,8")
    ap.add_argument("--gammas", default="1,2,4")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: fastest on a shared 2-core CPU)")
    ap.add_argument("--out", default="benchmarks/results/real_models.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ints = lambda s: [int(v) for v in s.split(",") if v.strip()]

    t0 = time.perf_counter()
    pair = load_pair(args.pair)
    load_s = time.perf_counter() - t0
    print(f"pair {pair.name}: {pair.description} (loaded in {load_s:.1f} s); torch threads "
          f"{torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    res = None
    for k in ints(args.k):  # one k at a time, so that progress shows
        part = verify_real_models(pair, args.steps, [k], args.selectors.split(","), n_samples=args.samples)
        print(f"  k={k}: {part['seconds']:.0f} s", flush=True)
        if res is None:
            res = part
        else:
            for key in ("records", "skipped", "summary"):
                res[key] += part[key]
            res["seconds"] += part["seconds"]
            res["model_seconds"] += part["model_seconds"]
            res["settings"]["ks"] += part["settings"]["ks"]
    print(f"verification: {args.steps} steps in {res['seconds']:.1f} s "
          f"(model forward passes {res['model_seconds']:.1f} s)")
    print(f"{'selector':<12}{'k':>3}{'optimum':>9}{'accept':>9}{'ratio min':>11}{'ratio med':>11}"
          f"{'sampled':>9}{'z':>7}{'1-TV':>8}")
    for r in res["summary"]:
        print(f"{r['selector']:<12}{r['k']:>3}{r['optimum_mean']:>9.4f}{r['acceptance_mean']:>9.4f}"
              f"{r['ratio_min']:>11.4f}{r['ratio_median']:>11.4f}{r.get('empirical_mean', float('nan')):>9.4f}"
              f"{r.get('z', float('nan')):>7.2f}{1 - r['tv_mean']:>8.4f}")
    gaps = [r["lp_vs_closed_form_max_gap"] for r in res["summary"] if "lp_vs_closed_form_max_gap" in r]
    if gaps:
        print(f"truncated LP (top-16 + other) vs closed form on the same support: max |gap| {max(gaps):.2e}")
    for s in res["skipped"]:
        print(f"skipped {s['selector']} k={s['k']}: {s['reason'][:100]}")

    prompt = corpus_prompts(1)[0]
    base = autoregressive_seconds(pair, args.tokens, prompt)
    print(f"\nbaseline: autoregressive target sampling, {args.tokens} tokens in {base:.2f} s "
          f"({args.tokens / base:.1f} tok/s)")
    eng = block_efficiency_sweep(pair, args.engine_selectors.split(","), ints(args.engine_k), ints(args.gammas),
                                 n_tokens=args.tokens)
    print(f"{'engine':<10}{'k':>3}{'gamma':>6}{'block eff':>10}{'accepts':>9}{'predicted':>10}"
          f"{'tok/s':>8}{'vs AR':>7}")
    for e in eng:
        tps = e["tokens"] / e["seconds"]
        e["speed_vs_autoregressive"] = tps / (args.tokens / base)
        print(f"{e['selector']:<10}{e['k']:>3}{e['gamma']:>6}{e['block_efficiency']:>10.3f}"
              f"{e['measured_accepts']:>9}{e['predicted_accepts']:>10.1f}{tps:>8.1f}"
              f"{e['speed_vs_autoregressive']:>7.2f}")
    res["engine"] = eng
    res["baseline_autoregressive_seconds"] = base
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    slim = {k: v for k, v in res.items() if k != "records"}
    out.write_text(json.dumps(slim, indent=2, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
