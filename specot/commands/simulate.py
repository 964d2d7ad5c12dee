"""``specot simulate``: Monte Carlo speculative decoding on Markov-chain LMs next to the exact values.

Builds a target/draft pair (random chains at a chosen TV gap, the Bernoulli or uniform pairs of Yin
et al., or n-gram models of CPython's help texts), simulates ``--runs`` generations of ``--tokens``
tokens with any selector, and prints each estimate with its 95% confidence interval beside the
exact expectation (forward DP; Yin et al.'s Theorem 1 for the unlimited lookahead).
"""

from __future__ import annotations

import math

from specot.io import dump_json

#: largest weighted number of (context, draft tuple) pairs the exact DP may enumerate for selectors
#: without a closed-form branch law (about 10-40 s on a shared 2-core CPU)
MAX_ENUMERATION = 20_000
#: cost of one enumerated tuple relative to the others: gumbel's conditional law is a quadrature
#: (about 25 times slower per tuple than RRS-wor's or the optimal verifier's)
ENUMERATION_WEIGHT = {"gumbel": 25}
#: largest number of float64 entries (tables, per-run arrays) a simulation may build (1 GiB)
MAX_ENTRIES = 2**27


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate", help="simulate speculative decoding on Markov-chain LMs, with exact values",
        description=__doc__.splitlines()[0])
    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=["random", "bernoulli", "uniform", "ngram"], default="random")
    model.add_argument("--vocab", type=int, default=None,
                       help="vocabulary size V (default: random 8, uniform 100, ngram 32)")
    model.add_argument("--order", type=int, default=1, help="order of the random chains (default 1)")
    model.add_argument("--tv-gap", type=float, default=0.3,
                       help="per-context TV(target, draft) of random chains (default 0.3)")
    model.add_argument("--horizon", action="store_true",
                       help="random chains: non-stationary, one table per position")
    model.add_argument("--target-prob", type=float, default=0.6, help="bernoulli: target P(1)")
    model.add_argument("--draft-prob", type=float, default=0.3, help="bernoulli: draft P(1)")
    model.add_argument("--support", type=int, default=1, help="uniform: target support size s")
    model.add_argument("--target-order", type=int, default=2, help="ngram: target order (default 2)")
    model.add_argument("--draft-order", type=int, default=1, help="ngram: draft order (default 1)")
    model.add_argument("--seed", type=int, default=0, help="seed of the model and of the simulation")
    algo = parser.add_argument_group("algorithm")
    algo.add_argument("--selector", default="speculative", help="ot_coupling selector name")
    algo.add_argument("-k", "--k", type=int, default=1, help="number of draft sequences")
    algo.add_argument("--gamma", default="4", help="draft length, or 'inf' for unlimited lookahead")
    algo.add_argument("--follow", choices=["tree", "one"], default="tree",
                      help="keep every agreeing draft (SpecTr tree) or one (Yin et al.'s batch algorithm)")
    run = parser.add_argument_group("simulation and cost")
    run.add_argument("-T", "--tokens", type=int, default=100, help="tokens per run")
    run.add_argument("-R", "--runs", type=int, default=2000, help="independent runs")
    run.add_argument("--c", type=float, default=0.0, help="draft/target cost ratio c")
    run.add_argument("--capacity", type=float, default=math.inf,
                     help="positions the target scores at the cost of one call (roofline)")
    run.add_argument("--no-exact", action="store_true", help="skip the exact DP")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run_command)


def _gamma(text: str) -> int | None:
    if text.lower() in ("inf", "none", "unlimited"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--gamma must be an integer or 'inf', got {text!r}") from None


def validate(args) -> None:
    """Check every option before any model is built (ValueError naming the option)."""
    if args.vocab is not None and args.vocab < 1:
        raise ValueError(f"--vocab must be >= 1, got {args.vocab}")
    if args.vocab is not None and args.model == "random" and args.vocab < 2:
        raise ValueError(f"--vocab must be >= 2 for random chains, got {args.vocab}")
    for name in ("order", "k", "target_order", "draft_order", "support"):
        value = getattr(args, name)
        low = 0 if name == "order" else 1
        if value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    g = _gamma(args.gamma)
    if g is not None and g < 1:
        raise ValueError(f"--gamma must be >= 1 or 'inf', got {args.gamma!r}")
    entries = _model_entries(args)
    if entries > MAX_ENTRIES:
        raise ValueError(f"the models would hold about {entries:,} float64 entries "
                         f"({entries * 8 / 2**30:,.1f} GiB), over the {MAX_ENTRIES * 8 / 2**30:.0f} GiB "
                         "limit; use a smaller --vocab (or --order)")


def _model_entries(args) -> int:
    """Entries of the two transition tables and of the per-run arrays ``[runs, V]``, before building."""
    V = _vocab(args)
    if args.model == "random":
        table = V ** (args.order + 1) * (args.tokens if args.horizon else 1)
    elif args.model == "ngram":
        table = V ** (max(args.target_order, args.draft_order) + 1)
    else:
        table = V
    return 2 * table + max(args.runs, 1) * V * max(1, args.k)


def _vocab(args) -> int:
    return args.vocab if args.vocab is not None else {"random": 8, "uniform": 100, "ngram": 32}.get(args.model, 2)


def build_models(args):
    """``(target, draft, description)`` from the parsed options."""
    from markov import builders

    V = _vocab(args)
    if args.model == "random":
        target, draft = builders.random_pair(V, order=args.order, tv_gap=args.tv_gap,
                                             horizon=args.tokens if args.horizon else None, seed=args.seed)
        return target, draft, f"random chains V={V} order={args.order} TV={args.tv_gap}"
    if args.model == "bernoulli":
        target, draft = builders.bernoulli_pair(args.target_prob, args.draft_prob)
        return target, draft, f"Bernoulli target Ber({args.target_prob}) draft Ber({args.draft_prob})"
    if args.model == "uniform":
        target, draft = builders.uniform_pair(V, args.support)
        return target, draft, f"uniform target on {args.support} of V={V} tokens"
    target, draft, _ = builders.ngram_pair(args.target_order, args.draft_order, V)
    return target, draft, (f"character n-grams of CPython help texts, V={V}, target order "
                           f"{args.target_order}, draft order {args.draft_order}")


def _exact_feasible(selector, k: int, n_states: int, V: int) -> bool:
    from markov.branch import has_closed_form

    if has_closed_form(selector, k):
        return True
    weight = ENUMERATION_WEIGHT.get(getattr(selector, "name", ""), 1)
    return n_states * sum(V**kk for kk in range(1, k + 1)) * weight <= MAX_ENUMERATION


def run_command(args) -> int:
    from markov.exact import expected_block_efficiency
    from markov.pair import ModelPair
    from markov.simulate import resolve_selector, simulate
    from markov.speedup import CostModel
    from markov.theory import expected_calls_unlimited, expected_rejections

    validate(args)
    gamma = _gamma(args.gamma)
    selector = resolve_selector(args.selector)
    cost = CostModel(c=args.c, capacity=args.capacity)
    target, draft, description = build_models(args)
    exact, note = None, ""
    pair = ModelPair(target, draft, args.tokens)
    if args.no_exact:
        note = "exact DP skipped (--no-exact)"
    elif not _exact_feasible(selector, args.k, pair.n_states, pair.V):  # decided before any work
        note = "exact DP skipped: no closed-form branch law and the enumeration is too large"
    sim = simulate(target, draft, selector, k=args.k, gamma=gamma, n_tokens=args.tokens, n_runs=args.runs,
                   seed=args.seed, cost=cost, follow=args.follow)
    if not note:
        exact = expected_block_efficiency(target, draft, selector, k=args.k, gamma=gamma,
                                          n_tokens=args.tokens, follow=args.follow)
    rows = [("rejections", sim.rejections, sim.rejections_se, exact and exact.expected_rejections),
            ("target calls", sim.target_calls, sim.target_calls_se, exact and exact.expected_calls),
            ("block efficiency", sim.block_efficiency, sim.block_efficiency_se,
             exact and exact.block_efficiency),
            ("speedup", sim.speedup, sim.block_efficiency_se * sim.speedup / sim.block_efficiency,
             exact and cost.speedup(exact.block_efficiency, gamma, args.k))]
    theorem1 = None
    if gamma is None and args.k == 1:
        theorem1 = {"expected_rejections": expected_rejections(target, draft, args.tokens),
                    "expected_calls": expected_calls_unlimited(target, draft, args.tokens)}
    if args.json:
        out = {"model": description, "selector": args.selector, "k": args.k, "gamma": gamma,
               "follow": args.follow, "n_tokens": args.tokens, "n_runs": args.runs, "seed": args.seed,
               "cost": {"c": args.c, "capacity": None if math.isinf(args.capacity) else args.capacity},
               "simulated": {}, "exact": None, "theorem1": theorem1, "note": note}
        for name, mean, se, _ in rows:
            key = name.replace(" ", "_")
            out["simulated"][key] = {"mean": mean, "se": se, "ci95": [mean - 1.96 * se, mean + 1.96 * se]}
        if exact is not None:
            out["exact"] = {name.replace(" ", "_"): value for name, _, _, value in rows}
        out["simulated"]["acceptance_rate"] = sim.acceptance_rate
        out["simulated"]["tokens_per_second"] = sim.tokens_per_second
        print(dump_json(out))
        return 0
    g = "inf" if gamma is None else gamma
    print(f"model: {description}")
    print(f"selector={args.selector} k={args.k} gamma={g} follow={args.follow} T={args.tokens} "
          f"R={args.runs} c={args.c} capacity={args.capacity}")
    print(f"{'quantity':<18}{'simulated':>12}{'95% CI':>26}{'exact':>12}")
    for name, mean, se, value in rows:
        ci = f"[{mean - 1.96 * se:.4f}, {mean + 1.96 * se:.4f}]"
        ex = "-" if value is None else f"{value:.4f}"
        print(f"{name:<18}{mean:>12.4f}{ci:>26}{ex:>12}")
    if theorem1 is not None:
        print(f"Theorem 1 (Yin et al.): E[rejections] = {theorem1['expected_rejections']:.4f}, "
              f"E[calls] = {theorem1['expected_calls']:.4f}")
    if note:
        print(note)
    print(f"simulated {sim.tokens_per_second:,.0f} tokens/s")
    return 0
