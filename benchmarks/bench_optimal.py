"""The exact optimal k-draft verifier at full vocabulary size: time per row and fit quality.

Measured in one run (docs/theory/optimal_verifier.md):

1. per-row time at V = 49152, k = 8 on CPU of the torch fast path (``gpu_backend.optimal``, plan +
   acceptance), the numpy importance rule and the numpy min-score layout (the exact reference),
   next to the baseline K-SEQ (``gpu_backend.kseq.kseq_rho``: SpecTr's rho* per row, the shared kernel
   ``ot_coupling.kernels.kseq.kseq_rho``) and the
   closed-form optimum (``solvers.closed_form.optimal_acceptance``);
2. a ``[B, 49152]`` batch through the torch fast path (B = 64 on CUDA; smaller on CPU);
3. Newton iterations, fit status (``LevelFit.status``: 0 converged), fit error ``max |r(lam)/r* - 1|``, quadrature bound and acceptance minus the
   optimum against V and k.

Inputs: Dirichlet(1) pairs (the hard case: tens of thousands of distinct ratios ``p/q``) and
Dirichlet(0.05) pairs (peaked, closer to LLM next-token laws). Run
``python benchmarks/bench_optimal.py [--quick] [--device cuda]``; times are the best of
``--repeats`` runs (CPU time with one torch thread on a CPU, wall time on CUDA), ratios are
time / K-SEQ time measured in the same run.

``--base DIR`` instead times the per-row fast path of this tree against another checkout
(``git -C <repo> archive <commit> | tar -x -C DIR``) in one run: subprocesses with ``PYTHONPATH`` on
one tree at a time, the trees alternating for ``--rounds`` rounds, each timing ``--rows`` rows per
input law (``--alpha``: Dirichlet concentrations, or ``softmax3`` for softmax of N(0, 3^2) logits)
once per row with a fresh verifier (plan + verify, or plan + acceptance; CPU time, one thread), so a
shared machine slows both sides alike. Per row the best over the rounds is kept; the table gives
the minimum and median over rows and the ratio this/base of the medians.
"""

from __future__ import annotations

import os

# one BLAS thread, like torch below: on a shared machine OpenBLAS threads spin and a 200 x 200
# solve can take 100x longer with two threads than with one
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time

import numpy as np
import torch

from gpu_backend.kseq import kseq_rho
from gpu_backend.optimal import TorchOptimal
from solvers.closed_form import optimal_acceptance
from solvers.importance_weights import importance_plan
from solvers.min_score_layout import greedy_layout


CHILD = r'''
import os, sys, json, time
os.environ["OPENBLAS_NUM_THREADS"] = "1"; os.environ["OMP_NUM_THREADS"] = "1"; os.environ["MKL_NUM_THREADS"] = "1"
import warnings; warnings.simplefilter("ignore")
import numpy as np, torch
torch.set_num_threads(1)
from gpu_backend.optimal import TorchOptimal
from solvers.optimal_verifier import OptimalVerifier
V, k, rows, laws = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")

def law_pairs(law, seed):
    rng = np.random.default_rng(seed)
    if law.startswith("softmax"):
        z = rng.normal(0.0, float(law[7:]), (2, rows, V))
        e = np.exp(z - z.max(-1, keepdims=True))
        e /= e.sum(-1, keepdims=True)
        return e[0], e[1]
    a = float(law)
    return rng.dirichlet(np.full(V, a), rows), rng.dirichlet(np.full(V, a), rows)

def clock(fn):
    t0 = time.process_time(); fn(); return time.process_time() - t0

out = {}
for law in laws:
    P, Q = law_pairs(law, 0)
    D = np.random.default_rng(1).integers(0, V, (rows, k))
    for b in range(rows):  # drafts ~ q (as in decoding)
        D[b] = np.random.default_rng(b).choice(V, k, p=Q[b])
    g = torch.Generator().manual_seed(0)
    tv, ta, nv, na = [], [], [], []
    TorchOptimal().acceptance(torch.tensor(P[:1]), torch.tensor(Q[:1]), k)  # warm-up
    for b in range(rows):
        pt, qt, dt = torch.tensor(P[b:b + 1]), torch.tensor(Q[b:b + 1]), torch.tensor(D[b:b + 1])
        tv.append(clock(lambda: TorchOptimal().verify(pt, qt, dt, g)))
        ta.append(clock(lambda: TorchOptimal().acceptance(pt, qt, k)))
        nv.append(clock(lambda: OptimalVerifier("importance").verify(P[b], Q[b], D[b], b)))
        na.append(clock(lambda: OptimalVerifier("importance").acceptance(P[b], Q[b], k)))
    out[law] = {"torch verify": tv, "torch acceptance": ta, "numpy verify": nv, "numpy acceptance": na}
print(json.dumps(out))
'''


def compare(base: str, V: int, k: int, rows: int, laws: list[str], rounds: int) -> None:
    """Same-run before/after table of the per-row fast path (see the module docstring)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    trees = {"base": Path(base).resolve(), "this": Path(__file__).resolve().parents[1]}
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for name, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=str(tree))
            res = subprocess.run([sys.executable, "-c", CHILD, str(V), str(k), str(rows), ",".join(laws)],
                                 cwd=tree, env=env, capture_output=True, text=True, check=True)
            got = json.loads(res.stdout.strip().splitlines()[-1])
            for law, paths in got.items():
                for path, ts in paths.items():
                    key = (law, path)
                    old = best.setdefault(name, {}).get(key)
                    best[name][key] = ts if old is None else list(map(min, old, ts))
    print(f"\n## per row, V={V}, k={k}, {rows} rows per law, best of {rounds} rounds (CPU ms, one thread; "
          f"load average before/after: see the caller)")
    print("| law | path | base min / median | this min / median | this/base (median) |")
    print("|---|---|---|---|---|")
    for key in best["this"]:
        a, b = np.array(best["base"][key]) * 1e3, np.array(best["this"][key]) * 1e3
        law = f"Dirichlet({key[0]})" if not key[0].startswith("softmax") else f"softmax N(0, {key[0][7:]}^2)"
        print(f"| {law} | {key[1]} | {a.min():.1f} / {np.median(a):.1f} | {b.min():.1f} / {np.median(b):.1f} | "
              f"{np.median(b) / np.median(a):.2f} |")


def best_time(fn, repeats: int, device: str = "cpu") -> float:
    """Best time of ``repeats`` calls (after one warm-up when ``repeats > 1``): CPU time of this
    process on a CPU (robust on a machine shared with other jobs; torch runs one thread), wall
    time with synchronisation on CUDA."""
    clock = time.perf_counter if device == "cuda" else time.process_time
    if repeats > 1:
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(clock() - t0)
    return min(times)


def pairs(V: int, B: int, conc: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(V, conc), size=B), rng.dirichlet(np.full(V, conc), size=B)


def per_row(V: int, k: int, conc: float, repeats: int, layout: bool) -> None:
    P, Q = pairs(V, 1, conc, 0)
    p, q = P[0], Q[0]
    pt, qt = torch.tensor(P), torch.tensor(Q)
    t_kseq = best_time(lambda: kseq_rho(pt, qt, k), repeats)
    t_cf = best_time(lambda: optimal_acceptance(p, q, k), repeats)
    t_torch = best_time(lambda: TorchOptimal().acceptance(pt, qt, k), repeats)
    t_np = best_time(lambda: importance_plan(P, Q, k), repeats)
    print(f"\n## per row, V={V}, k={k}, Dirichlet({conc}) (CPU, float64)")
    print("| method | time | / K-SEQ |")
    print("|---|---|---|")
    rows = [("K-SEQ rho* (gpu_backend.kseq, baseline)", t_kseq),
            ("closed-form optimum alpha* (value only)", t_cf),
            ("optimal, torch fast path (plan + acceptance)", t_torch),
            ("optimal, numpy importance rule", t_np)]
    if layout:
        t_lay = best_time(lambda: greedy_layout(p, q, k), 1)
        rows.append(("optimal, numpy min-score layout (exact reference)", t_lay))
    for name, t in rows:
        print(f"| {name} | {t * 1e3:.1f} ms | {t / t_kseq:.1f}x |")


def batch(V: int, B: int, k: int, conc: float, device: str, repeats: int) -> None:
    P, Q = pairs(V, B, conc, 1)
    pt, qt = torch.tensor(P, device=device), torch.tensor(Q, device=device)
    t = best_time(lambda: TorchOptimal().acceptance(pt, qt, k), repeats, device)
    t_kseq = best_time(lambda: kseq_rho(pt, qt, k), repeats, device)
    print(f"\n## batch [{B}, {V}], k={k}, Dirichlet({conc}) on {device}: optimal {t * 1e3:.1f} ms "
          f"({t / B * 1e3:.2f} ms per row), K-SEQ rho* {t_kseq * 1e3:.1f} ms ({t / t_kseq:.1f}x)")


def quality(Vs, ks, conc: float) -> None:
    print(f"\n## fit quality, Dirichlet({conc}) (numpy importance rule, tol 1e-12 in L1 per level)")
    print("| V | k | Newton steps | status | groups | fit error (L1) | quad. bound (L1) | acceptance - alpha* | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for V in Vs:
        for k in ks:
            P, Q = pairs(V, 1, conc, 2)
            t0 = time.process_time()
            plan = importance_plan(P, Q, k)
            dt = time.process_time() - t0
            gap = np.minimum(plan.marginal[0], P[0]).sum() - optimal_acceptance(P[0], Q[0], k)
            groups = np.unique(plan.weights[0][Q[0] > 0]).size
            print(f"| {V} | {k} | {plan.iterations} | {plan.status} | {groups} | {plan.fit_error[0]:.1e} | {plan.quad_error[0]:.1e} | "
                  f"{gap:+.1e} | {dt * 1e3:.0f} ms |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base", help="checkout to compare the per-row fast path against (same run)")
    ap.add_argument("--rows", type=int, default=8, help="rows per law with --base")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds with --base")
    ap.add_argument("--alpha", default="1,0.05,softmax3",
                    help="laws with --base: Dirichlet concentrations and/or softmax<sigma>")
    ap.add_argument("-k", type=int, default=8, help="drafts with --base")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.base:
        compare(args.base, 4096 if args.quick else 49152, args.k, args.rows, args.alpha.split(","),
                args.rounds)
        return
    V = 4096 if args.quick else 49152
    for conc in (1.0, 0.05):
        per_row(V, 8, conc, args.repeats, layout=True)
    B = 64 if args.device == "cuda" else 8
    batch(V, B, 8, 0.05, args.device, args.repeats)
    Vs = (1000, 4096) if args.quick else (1000, 10000, 49152)
    for conc in (1.0, 0.05):
        quality(Vs, (2, 8, 16), conc)


if __name__ == "__main__":
    main()
