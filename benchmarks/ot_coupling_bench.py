"""Timings of the ot_coupling reference selectors, as ratios against baselines measured in the same run.

1. ``kseq_rho``: exact (sorted breakpoints + closed-form segment) vs safeguarded bisection on the full
   ``beta`` (baseline), at V = 49152 (SmolLM2's vocabulary), one row and a batch of rows.
2. ``verify_batch`` (vectorised) vs the per-row ``verify`` loop (baseline) for the simulator's hot path.
3. Exact acceptances at large V (no baseline: absolute seconds): RRS-wor, Gumbel, naive-wor.

Run: ``python benchmarks/ot_coupling_bench.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import time

import numpy as np

from ot_coupling import get_draft_law, get_selector
from ot_coupling.kseq import kseq_rho, kseq_rho_batch


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    V = 49152
    p, q = rng.dirichlet(np.full(V, 0.05)), rng.dirichlet(np.full(V, 0.05))
    print(f"1. kseq_rho at V={V}")
    for k in (2, 4, 8):
        te = best_of(lambda k=k: kseq_rho(p, q, k))
        tb = best_of(lambda k=k: kseq_rho(p, q, k, method="bisect"))
        diff = abs(kseq_rho(p, q, k) - kseq_rho(p, q, k, method="bisect"))
        print(f"   k={k}: exact {te * 1e3:7.2f} ms  bisect {tb * 1e3:7.2f} ms  speedup x{tb / te:5.2f}  |diff|={diff:.1e}")
    B, Vb = 64, 4096
    P, Q = rng.dirichlet(np.full(Vb, 0.1), size=B), rng.dirichlet(np.full(Vb, 0.1), size=B)
    te = best_of(lambda: kseq_rho_batch(P, Q, 4))
    tb = best_of(lambda: kseq_rho_batch(P, Q, 4, method="bisect"))
    print(f"   batch B={B}, V={Vb}, k=4: exact {te * 1e3:.1f} ms  bisect {tb * 1e3:.1f} ms  speedup x{tb / te:.2f}")

    print("2. verify_batch vs per-row verify loop (B=2000, V=1000, k=4; k=1 speculative, k=2 spechub)")
    B, Vv = 2000, 1000
    P, Q = rng.dirichlet(np.full(Vv, 0.3), size=B), rng.dirichlet(np.full(Vv, 0.3), size=B)
    for name in ("speculative", "naive", "kseq", "rrs", "rrs_wor", "spechub", "greedy", "gumbel"):
        sel = get_selector(name)
        k = {"speculative": 1, "spechub": 2}.get(name, 4)
        D = get_draft_law(sel.draft_law).sample_batch(Q, k, rng)
        tv = best_of(lambda sel=sel, D=D: sel.verify_batch(P, Q, D, 1), repeat=3)
        tl = best_of(lambda sel=sel, D=D: [sel.verify(P[b], Q[b], D[b], 1) for b in range(B)], repeat=1)
        print(f"   {name:<12} batch {tv * 1e3:8.1f} ms  loop {tl * 1e3:8.1f} ms  speedup x{tl / tv:6.1f}  "
              f"({B / tv / 1e3:.0f}k rows/s)")

    print("3. exact acceptance at large V (absolute)")
    for Vx, k, name in ((49152, 2, "rrs_wor"), (2000, 3, "rrs_wor"), (200, 4, "gumbel"), (1000, 2, "gumbel"),
                        (1000, 4, "naive_wor"), (49152, 4, "naive_wor")):
        pa, qa = rng.dirichlet(np.full(Vx, 0.3)), rng.dirichlet(np.full(Vx, 0.3))
        sel = get_selector("naive", drafts="without_replacement") if name == "naive_wor" else get_selector(name)
        t = best_of(lambda sel=sel, pa=pa, qa=qa, k=k: sel.acceptance(pa, qa, k), repeat=1)
        print(f"   {name:<10} V={Vx:<6} k={k}: {t:7.3f} s  alpha={sel.acceptance(pa, qa, k):.6f}")


if __name__ == "__main__":
    main()
