"""``specot sequence``: every sequence verifier's exact E|Y| next to the sequence-level optimum.

One verification round over ``k`` i.i.d. draft paths of length ``L`` on a small Markov-chain pair:
the LP optimum ``LP*`` of ``E|Y|`` (``solvers.sequence_optimum``, "n/a" when unavailable), the
depth-wise upper bound ``1 + sum_t alpha_t``, and for every registered numpy sequence verifier its
exact ``E|Y|`` (drafts and coins integrated out) and its share of the achievable gain
``(E|Y| - 1) / (LP* - 1)`` (docs/theory/sequence_verifiers.md).
"""

from __future__ import annotations

import time

from specot.io import dump_json

#: verifiers shown (the LP optimum itself is printed separately)
VERIFIERS = ("bv", "specinfer", "spectr", "traversal", "gbv", "blend")
MAX_V = 16


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sequence", help="sequence-level optimum vs every tree / multi-path verifier (exact, small V)",
        description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["random", "ngram"], default="random",
                        help="random: first-order chains, draft = 0.5 target + 0.5 Dirichlet(1) per row; "
                             "ngram: character bigram target vs unigram draft of CPython help texts")
    parser.add_argument("-V", "--vocab", type=int, default=3, help="vocabulary size (default 3)")
    parser.add_argument("-L", "--length", type=int, default=3, help="draft path length L (default 3)")
    parser.add_argument("-k", "--k", type=int, default=2, help="number of draft paths k (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random pair (default 0)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def _validate(args) -> None:
    from ot_coupling.sequence import MAX_ENUMERATION

    if not 2 <= args.vocab <= MAX_V:
        raise ValueError(f"-V must be an integer in [2, {MAX_V}], got {args.vocab}")
    if args.length < 1:
        raise ValueError(f"-L must be >= 1, got {args.length}")
    if args.k < 1:
        raise ValueError(f"-k must be >= 1, got {args.k}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if float(args.vocab) ** (args.k * args.length) > MAX_ENUMERATION:
        raise ValueError(f"exact enumeration needs V^(k L) <= {MAX_ENUMERATION}, got "
                         f"{args.vocab}^{args.k * args.length}; use smaller -V, -L or -k")


def build_pair(model: str, V: int, seed: int):
    """``(target, draft, description)``: callables ``prefix tuple -> length-V vector``."""
    import numpy as np

    if model == "random":
        rng = np.random.default_rng(seed)
        P = rng.dirichlet(np.ones(V), size=V + 1)  # row V: the first token after the fixed context
        Q = 0.5 * P + 0.5 * rng.dirichlet(np.ones(V), size=V + 1)
        return ((lambda u: P[u[-1] if u else V]), (lambda u: Q[u[-1] if u else V]),
                f"random first-order chains V={V} (draft = 0.5 target + 0.5 Dirichlet(1)), seed={seed}")
    from markov import builders

    target, draft, _ = builders.ngram_pair(2, 1, V)
    ctx = (0, 0)
    return ((lambda u: target.next_dist(ctx + tuple(u))), (lambda u: draft.next_dist(ctx + tuple(u))),
            f"character n-grams of CPython help texts V={V}: order-2 target, order-1 draft, context (0, 0)")


def _level_law(model, t: int, V: int):
    from itertools import product

    import numpy as np

    out = np.empty(V ** t)
    for i, s in enumerate(product(range(V), repeat=t)):
        out[i] = np.prod([model(s[:j])[s[j]] for j in range(t)])
    return out


def upper_bound(target, draft, k: int, L: int, V: int) -> float:
    """``1 + sum_t alpha_t``: ``alpha_t`` the optimal acceptance of the depth-``t`` target law
    against ``k`` i.i.d. depth-``t`` draft prefixes (closed-form prefix cut)."""
    from solvers.closed_form import optimal_cut

    return 1.0 + sum(optimal_cut(_level_law(target, t, V), _level_law(draft, t, V), k).value
                     for t in range(1, L + 1))


def _optimum(target, draft, k: int, L: int):
    from solvers import sequence_optimum

    res = sequence_optimum(target, draft, k=k, L=L)
    if not res.success:
        return None, f"LP failed: {res.message}"
    return float(res.value), ""


def run(args) -> int:
    _validate(args)
    from ot_coupling.sequence import get_sequence_verifier

    V, L, k = args.vocab, args.length, args.k
    target, draft, description = build_pair(args.model, V, args.seed)
    ub = upper_bound(target, draft, k, L, V)
    t0 = time.perf_counter()
    lp, note = _optimum(target, draft, k, L)
    lp_seconds = time.perf_counter() - t0
    rows = []
    for name in VERIFIERS:
        t0 = time.perf_counter()
        e = get_sequence_verifier(name).expected_length(target, draft, k, L)
        share = None if lp is None or lp <= 1.0 + 1e-12 else (e - 1.0) / (lp - 1.0)
        rows.append({"verifier": name, "expected_length": e, "share_of_gain": share,
                     "share_of_bound": (e - 1.0) / (ub - 1.0) if ub > 1.0 + 1e-12 else None,
                     "seconds": time.perf_counter() - t0})
    if args.json:
        print(dump_json({"model": description, "V": V, "L": L, "k": k, "seed": args.seed,
                         "optimum": lp, "optimum_note": note, "optimum_seconds": lp_seconds if lp else None,
                         "upper_bound": ub, "verifiers": rows}))
        return 0
    print(f"model: {description}")
    print(f"k = {k} draft paths of length L = {L}; E|Y| = accepted tokens + 1 per round (exact)")
    print(f"LP optimum  E|Y|* = {'n/a' if lp is None else f'{lp:.6f}'}" + (f"  ({note})" if note else ""))
    print(f"upper bound 1 + sum_t alpha_t = {ub:.6f}")
    print(f"{'verifier':<12}{'E|Y|':>10}{'share of gain':>15}{'share of bound':>16}")
    for r in rows:
        share = "n/a" if r["share_of_gain"] is None else f"{r['share_of_gain']:.4f}"
        bound = "n/a" if r["share_of_bound"] is None else f"{r['share_of_bound']:.4f}"
        print(f"{r['verifier']:<12}{r['expected_length']:>10.6f}{share:>15}{bound:>16}")
    return 0
