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


# ------------------------------------------------------- --random: pair-by-pair file and --resume
RANDOM = ["compare", "--random", "6", "--vocab", "4", "--seed", "3", "-k", "1,2", "--laws", "iid,greedy"]


class CountingCompare:
    """Counts the pairs computed (specot.compare.compare_selectors); ``stop_at``: raise
    KeyboardInterrupt on that call (an interrupted run)."""

    def __init__(self, monkeypatch, stop_at=None):
        import specot.compare as module

        self.real, self.calls, self.stop_at = module.compare_selectors, 0, stop_at
        monkeypatch.setattr(module, "compare_selectors", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


@pytest.fixture
def no_figures(monkeypatch):
    """The figures are tested above; here they would only cost time."""
    import specot.compare as module

    monkeypatch.setattr(module, "plot_comparison", lambda records, prefix: [])


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_random_interrupted_then_resumed_equals_an_uninterrupted_run(tmp_path, monkeypatch, capsys,
                                                                      no_figures):
    whole = tmp_path / "whole"
    assert main([*RANDOM, "--out", str(whole)]) == 0
    part = tmp_path / "part"
    counter = CountingCompare(monkeypatch, stop_at=4)
    assert main([*RANDOM, "--out", str(part)]) == 130  # Ctrl-C during the 4th pair
    assert [row.get("case") for row in _jsonl(part / "compare.jsonl")] == [None, 0, 1, 2]  # header + 3 pairs
    counter.calls, counter.stop_at = 0, None
    capsys.readouterr()
    assert main([*RANDOM, "--out", str(part), "--resume"]) == 0
    assert counter.calls == 3  # only the missing pairs ran
    assert "--resume: 3 of 6 pairs loaded" in capsys.readouterr().err
    assert (part / "compare.csv").read_text() == (whole / "compare.csv").read_text()
    assert _jsonl(part / "compare.jsonl")[1:] == _jsonl(whole / "compare.jsonl")[1:]

    # more pairs than the first run: the same draws, only the new ones computed
    counter.calls = 0
    assert main([*RANDOM[:2], "8", *RANDOM[3:], "--out", str(part), "--resume"]) == 0
    assert counter.calls == 2
    with open(part / "compare.csv") as fh:
        assert {r["case"] for r in csv.DictReader(fh)} == {str(i) for i in range(8)}


def test_random_resume_drops_a_torn_line_and_refuses_other_options(tmp_path, monkeypatch, capsys, no_figures):
    out = tmp_path / "cmp"
    assert main([*RANDOM, "--out", str(out)]) == 0
    path = out / "compare.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:40])  # the last pair cut mid-write
    counter = CountingCompare(monkeypatch)
    assert main([*RANDOM, "--out", str(out), "--resume"]) == 0
    assert counter.calls == 1
    assert len(_jsonl(path)) == 7  # every line is complete JSON again

    before = path.read_text()
    capsys.readouterr()
    assert main([*RANDOM, "--vocab", "5", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other options (vocab 4 -> 5)" in err
    assert path.read_text() == before  # refused before touching the finished pairs

    assert main([*RANDOM, "--out", str(out)]) == 0  # without --resume: started afresh, said so
    assert counter.calls == 7 and "starting afresh" in capsys.readouterr().err


@pytest.mark.parametrize("argv,msg", [
    (["compare", "--p", P, "--q", Q, "--resume"], "--resume applies to --random runs only"),
    (["compare", "--random", "2", "--resume", "--out", "{out}/notes.txt"], "exists and is not a directory"),
    (["compare", "--random", "2", "--resume", "--out", "{out}"], "is not a compare.jsonl"),
])
def test_resume_errors_exit_2_with_one_line(argv, msg, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "compare.jsonl").write_text("not json\n")
    assert main([a.replace("{out}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and msg in err, err
