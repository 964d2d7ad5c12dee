"""Pieces shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, which puts this
folder on ``sys.path``).

* :func:`ortools_flows`: OR-Tools' max-flow on the membership network ``source -> draft set ->
  token -> sink``, int64-scaled (the peer of ``bench_solver_peers.py`` and ``bench_flow_plan.py``).
* :func:`compare_trees`: same-run before/after timing of two checkouts (``bench_kernels.py``,
  ``bench_race_selection.py``): each measurement runs in a subprocess with ``PYTHONPATH`` on one
  tree, the trees alternate for ``rounds`` rounds, and each side keeps its best CPU time, so a
  shared, loaded machine slows both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def ortools_flows(p, set_probs, edge_set, edge_token, scale: float):
    """Solve the membership max-flow with OR-Tools on capacities scaled by ``scale`` and floored to
    int64; returns the solver and the membership flows (float, divided back by ``scale``)."""
    from ortools.graph.python import max_flow

    n, V = set_probs.size, p.size
    source, sink = n + V, n + V + 1
    tails = np.concatenate([np.full(n, source), edge_set, n + np.arange(V)])
    heads = np.concatenate([np.arange(n), n + edge_token, np.full(V, sink)])
    caps = np.concatenate([np.floor(set_probs * scale), np.full(edge_set.size, scale),
                           np.floor(p * scale)]).astype(np.int64)
    smf = max_flow.SimpleMaxFlow()
    smf.add_arcs_with_capacity(tails, heads, caps)
    if smf.solve(source, sink) != smf.OPTIMAL:
        raise RuntimeError("OR-Tools max-flow did not solve")
    return smf, smf.flows(np.arange(n, n + edge_set.size)) / scale


#: the start of every measuring script of :func:`compare_trees`: one BLAS/torch thread, and
#: ``add(name, fn)``, which records the best CPU time of ``repeats`` calls of ``fn`` after a warm-up
#: when ``name`` contains one of the comma-separated ``--only`` substrings. ``sys.argv[1:3]`` are
#: ``repeats`` and ``only``; a script's own arguments follow. The script ends by printing ``out``.
CHILD_PRELUDE = r'''
import os, sys, json, time
os.environ["OPENBLAS_NUM_THREADS"] = "1"; os.environ["OMP_NUM_THREADS"] = "1"
import warnings; warnings.simplefilter("ignore")
import numpy as np, torch
torch.set_num_threads(1)
repeats, only = int(sys.argv[1]), sys.argv[2].split(",")
out = {}

def add(key, fn):
    if any(o in key for o in only):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.process_time(); fn(); ts.append(time.process_time() - t0)
        out[key] = min(ts)
'''


def tree_parser(description: str, repeats: int) -> argparse.ArgumentParser:
    """The options every two-tree benchmark takes: ``--base``, ``--rounds``, ``--repeats``, ``--only``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--base", required=True, type=Path, help="checkout to compare against")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--only", default="",
                    help="run only the measurements whose name contains one of these (comma-separated)")
    return ap


def _run_child(tree: Path, child: str, args: list[str]) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    res = subprocess.run([sys.executable, "-c", child, *args], cwd=tree, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def compare_trees(body: str, args: argparse.Namespace, extra: list[str], header: str) -> None:
    """Run the measuring script :data:`CHILD_PRELUDE` + ``body`` (its own arguments ``extra``) on
    ``args.base`` and on this checkout, alternating for ``args.rounds`` rounds, and print the best
    times and the ratios this / base as a Markdown table under ``header``."""
    child = CHILD_PRELUDE + body + "\nprint(json.dumps(out))\n"
    argv = [str(args.repeats), args.only, *extra]
    here = Path(__file__).resolve().parents[1]
    best: dict[str, dict[str, float]] = {"base": {}, "this": {}}
    for _ in range(args.rounds):
        for side, tree in (("base", args.base.resolve()), ("this", here)):
            for key, t in _run_child(tree, child, argv).items():
                best[side][key] = min(t, best[side].get(key, float("inf")))
    print(header + "\n")
    print("| measurement | base (ms) | this (ms) | this / base |")
    print("|---|---|---|---|")
    for key, t in best["this"].items():
        b = best["base"].get(key)
        print(f"| {key} | {b * 1e3:.1f} | {t * 1e3:.1f} | {t / b:.2f} |" if b
              else f"| {key} | - | {t * 1e3:.1f} | - |")
