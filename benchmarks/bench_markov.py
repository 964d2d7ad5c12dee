"""Speed of the Markov-chain simulator and of the exact DP.

1. ``markov.simulate`` (vectorised over runs) vs a straightforward per-run Python loop (same
   selector, same chain, measured in the same run): V = 64, first order, TV = 0.3, gamma = 4, k = 1,
   10 000 runs of 1000 tokens. Reported as simulated tokens per second and the ratio to the loop.
2. The same with k = 2 K-SEQ drafts (the ``verify_batch`` path; no loop baseline).
3. The exact DP (``markov.expected_block_efficiency``, gamma = 4) and Theorem 1 at V = 256, T = 1000.

Run: ``python benchmarks/bench_markov.py [--runs 10000] [--tokens 200]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from markov import expected_block_efficiency, expected_rejections, random_pair, simulate
from ot_coupling import get_selector


def loop_baseline(target, draft, selector, gamma: int, n_tokens: int, n_runs: int, seed: int) -> int:
    """Straightforward speculative decoding, one run and one token at a time; returns tokens made."""
    rng = np.random.default_rng(seed)
    P, Q = target.table[0], draft.table[0]
    V = P.shape[1]
    made = 0
    for _ in range(n_runs):
        ctx = int(rng.integers(V))
        n = 0
        while n < n_tokens:
            drafts, c = [], ctx
            for _ in range(gamma):
                x = int(np.searchsorted(np.cumsum(Q[c]), rng.random() * Q[c].sum(), side="right"))
                x = min(x, V - 1)
                drafts.append(x)
                c = x
            accepted_all = True
            for x in drafts:
                token, accepted = selector.verify(P[ctx], Q[ctx], [x], rng)
                ctx, n = token, n + 1
                if not accepted or n == n_tokens:
                    accepted_all = accepted and n < n_tokens
                    break
            if accepted_all:
                ctx = int(min(np.searchsorted(np.cumsum(P[ctx]), rng.random(), side="right"), V - 1))
                n += 1
        made += n
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs of the tabulated k = 1 simulation")
    parser.add_argument("--tokens", type=int, default=1000, help="tokens per run")
    parser.add_argument("--batch-runs", type=int, default=1000, help="runs of the verify_batch simulations")
    parser.add_argument("--loop-runs", type=int, default=20, help="runs of the per-run Python loop")
    args = parser.parse_args()
    target, draft = random_pair(64, tv_gap=0.3, seed=0)
    sel = get_selector("speculative")

    t0 = time.perf_counter()
    res = simulate(target, draft, sel, k=1, gamma=4, n_tokens=args.tokens, n_runs=args.runs, seed=1)
    t_sim = time.perf_counter() - t0
    rate_sim = args.tokens * args.runs / t_sim
    t0 = time.perf_counter()
    res_nt = simulate(target, draft, sel, k=1, gamma=4, n_tokens=args.tokens, n_runs=args.batch_runs, seed=1,
                      tabulate=False)
    rate_nt = args.tokens * args.batch_runs / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    made = loop_baseline(target, draft, sel, 4, args.tokens, args.loop_runs, seed=2)
    rate_loop = made / (time.perf_counter() - t0)
    print(f"V=64, first order, TV=0.3, gamma=4, k=1, T={args.tokens}, R={args.runs}")
    print(f"  simulate (tabulated kernel):  {rate_sim:12,.0f} tokens/s  (BE {res.block_efficiency:.3f}"
          f" +- {res.block_efficiency_se:.3f}; {t_sim:.2f} s incl. tabulation)")
    print(f"  simulate (verify_batch path): {rate_nt:12,.0f} tokens/s  (BE {res_nt.block_efficiency:.3f}; "
          f"R={args.batch_runs})")
    print(f"  per-run Python loop:          {rate_loop:12,.0f} tokens/s  ({args.loop_runs} runs)")
    print(f"  ratio simulate / loop: {rate_sim / rate_loop:,.0f}x (tabulated), {rate_nt / rate_loop:,.0f}x "
          f"(verify_batch)")

    t0 = time.perf_counter()
    res2 = simulate(target, draft, "kseq", k=2, gamma=4, n_tokens=args.tokens, n_runs=args.batch_runs, seed=3)
    rate_k2 = args.tokens * args.batch_runs / (time.perf_counter() - t0)
    print(f"  simulate k=2 K-SEQ tree:      {rate_k2:12,.0f} tokens/s  (BE {res2.block_efficiency:.3f}; "
          f"R={args.batch_runs})")

    big_t, big_d = random_pair(256, tv_gap=0.3, seed=0)
    t0 = time.perf_counter()
    ex = expected_block_efficiency(big_t, big_d, "speculative", k=1, gamma=4, n_tokens=1000)
    t_dp = time.perf_counter() - t0
    t0 = time.perf_counter()
    thm1 = expected_rejections(big_t, big_d, 1000)
    t_thm1 = time.perf_counter() - t0
    print(f"V=256, T=1000: exact DP (gamma=4, k=1) {t_dp:.2f} s (BE {ex.block_efficiency:.4f}); "
          f"Theorem 1 {t_thm1:.3f} s (E[N_rej] {thm1:.2f})")


if __name__ == "__main__":
    main()
