"""``specot compare`` and specot.compare: records, optimum, figures, errors."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from oracles import brute_force_optimum

from ot_coupling import enumerate_drafts
from specot.compare import compare_selectors
from specot.cli import main

P, Q = "0.5,0.3,0.15,0.05", "0.2,0.2,0.3,0.3"


def test_compare_records_match_brute_force_optimum():
    p, q = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.2, 0.2, 0.3, 0.3])
    records = compare_selectors(p, q, [1, 2, 3])
    seen = {(r["law"], r["algorithm"], r["k"]) for r in records}
    assert {("iid", "kseq", 2), ("without_replacement", "gumbel", 3), ("hub", "spechub", 2),
            ("greedy", "greedy", 3), ("iid", "speculative", 1)} <= seen
    assert ("hub", "spechub", 3) not in seen and ("iid", "speculative", 2) not in seen
    for r in records:
        opt, _ = brute_force_optimum(p, *enumerate_drafts(q, r["k"], r["law"]))
        if math.isfinite(r["optimum"]):  # solvers' wor optimum is a quadrature (~1e-9)
            assert r["optimum"] == pytest.approx(opt, abs=1e-7)
        if math.isfinite(r["acceptance"]):
            assert r["acceptance"] <= opt + 1e-9
            assert r["ratio"] == pytest.approx(r["acceptance"] / r["optimum"])
        else:
            assert r["note"]  # e.g. the optional "optimal" selector is not available


def test_cli_table_and_json(capsys):
    assert main(["compare", "--p", P, "--q", Q, "-k", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "kseq" in out and "0.785330" in out and "spechub" in out
    assert main(["compare", "--p", P, "--q", Q, "-k", "2", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    kseq = next(r for r in records if r["algorithm"] == "kseq")
    assert all(r["acceptance"] is None or math.isfinite(r["acceptance"]) for r in records)  # strict JSON
    assert kseq["acceptance"] == pytest.approx(0.785330, abs=1e-6)
    assert kseq["optimum"] == pytest.approx(0.84, abs=1e-9)


def test_cli_random_writes_csv_and_figures(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--random", "3", "--vocab", "5", "--concentration", "0.5", "--seed", "1",
                 "-k", "1,2,3", "--out", str(out)]) == 0
    for name in ("compare.csv", "compare_acceptance.png", "compare_acceptance.svg",
                 "compare_ratio.png", "compare_ratio.svg"):
        assert (out / name).stat().st_size > 0
    with open(out / "compare.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["case"] for r in rows} == {"0", "1", "2"}
    assert all(float(r["ratio"]) <= 1 + 1e-9 for r in rows if r["ratio"] not in ("", "nan"))


@pytest.mark.parametrize("argv,msg", [
    (["compare", "--p", "0.5,0.6", "--q", "0.5,0.5"], "p must sum to 1"),
    (["compare", "--p", P], "give --p and --q"),
    (["compare", "--p", P, "--q", Q, "-k", "0"], "k must be >= 1"),
    (["compare", "--p", P, "--q", Q, "--laws", "nope"], "unknown draft law"),
    (["compare", "--random", "0"], "n must be >= 1"),
])
def test_cli_errors(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
