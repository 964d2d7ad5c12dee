"""``specot reproduce``: the pipeline writes figures and report.md, claims are computed and checked,
sweeps run in processes and on a dask cluster with the same results, bad options exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from specot import cli
from specot.io import dump_json
from specot.reproduce import Claim, Context, ExperimentResult, reproduce, run_experiment
from specot.reproduce.core import EXPERIMENTS, missing_pieces, validate_names
from specot.reproduce.parallel import parallel_map

CHEAP = [n for n in ("leviathan", "theory") if not missing_pieces(n)]


def _square(x):
    return x * x


@pytest.fixture(scope="module")
def cheap_run(tmp_path_factory):
    if not CHEAP:
        pytest.skip("the cheap experiments' library pieces are missing")
    out = tmp_path_factory.mktemp("repro")
    code = cli.main(["reproduce", "--only", *CHEAP, "--out", str(out), "--workers", "1"])
    return code, out


def test_cli_writes_report_and_figures(cheap_run):
    code, out = cheap_run
    assert code == 0
    report = (out / "report.md").read_text()
    for name in CHEAP:
        figs = sorted((out / name).glob("*.png"))
        assert figs, f"no figure for {name}"
        for png in figs:
            assert png.stat().st_size > 10_000
            svg = png.with_suffix(".svg")
            assert svg.exists() and svg.read_text().lstrip().startswith("<?xml")
            assert f"({name}/{png.name})" in report  # every figure is embedded with its caption line
        assert f"## {name}:" in report
    assert "| Paper | Claim | Paper | Ours | Holds | Note |" in report


def test_report_json_claims(cheap_run):
    _, out = cheap_run
    data = json.loads((out / "report.json").read_text())
    assert data["mode"] == "quick"
    assert [e["name"] for e in data["experiments"]] == CHEAP
    for exp in data["experiments"]:
        assert exp["status"] == "ok"
        assert exp["claims"], exp["name"]
        assert set(exp["captions"]) == {p.split("/")[-1][:-4] for p in exp["files"] if p.endswith(".png")}
        for c in exp["claims"]:
            assert set(c) == {"paper", "statement", "paper_value", "our_value", "holds", "note"}
            # a claim that does not hold must say why
            assert c["holds"] or c["note"], c


def test_theory_and_leviathan_claims_hold(cheap_run):
    """The identities of Yin et al. and Leviathan et al. hold (the paper-number comparisons of
    Table 2 / Chen et al. are allowed to differ, with a note)."""
    _, out = cheap_run
    data = json.loads((out / "report.json").read_text())
    for exp in data["experiments"]:
        for c in exp["claims"]:
            if "Table" in c["paper"]:
                continue
            assert c["holds"], (exp["name"], c["statement"], c["our_value"])


def test_claims_are_reproducible(cheap_run):
    """Running an experiment again with the same seed gives the same claims as the CLI run."""
    _, out = cheap_run
    name = CHEAP[-1]
    again = run_experiment(name, Context(seed=0, progress=False))
    saved = next(e for e in json.loads((out / "report.json").read_text())["experiments"] if e["name"] == name)
    assert json.loads(dump_json([c.as_dict() for c in again.claims])) == saved["claims"]


def test_json_flag_prints_summary(tmp_path, capsys):
    if "leviathan" not in CHEAP:
        pytest.skip("markov.speedup missing")
    assert cli.main(["reproduce", "--only", "leviathan", "--out", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["claims"] == len(data["experiments"][0]["claims"]) > 0


@pytest.mark.parametrize("argv, needle", [
    (["--only", "nonsense"], "unknown experiment 'nonsense'"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--scheduler", "tcp://127.0.0.1:1", "--only", "theory"], "--scheduler"),
])
def test_bad_options_exit_2_with_one_line(argv, needle, tmp_path, capsys):
    if "theory" in argv and "theory" not in CHEAP:
        pytest.skip("theory pieces missing")
    code = cli.main(["reproduce", *argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and needle in err, err


def test_validate_names_keeps_registry_order():
    assert validate_names(["block", "leviathan"]) == [n for n in EXPERIMENTS if n in ("block", "leviathan")]
    assert validate_names(None) == list(EXPERIMENTS)


def test_claim_close_and_formatting():
    c = Claim.close("P", "s", 2.0, 2.004, atol=0.005)
    assert c.holds and "atol 0.005" in c.note
    assert not Claim.close("P", "s", 2.0, 2.01, atol=0.005).holds
    assert Claim("P", "s", None, 1.23456789, True).our_text == "1.235"


def test_failing_experiment_is_reported_not_fatal(tmp_path, monkeypatch):
    from specot.reproduce import runner

    def boom(ctx):
        raise RuntimeError("kaput")

    def fine(ctx):
        res = ExperimentResult()
        res.claims.append(Claim("P", "s", 1, 1, True))
        return res

    monkeypatch.setattr(runner, "experiment_function", lambda name: boom if name == "block" else fine)
    monkeypatch.setattr(runner, "missing_pieces", lambda name: [])
    runs = reproduce(["block", "leviathan"], Context(progress=False), tmp_path)
    assert {r.name: r.status for r in runs} == {"block": "error", "leviathan": "ok"}
    report = (tmp_path / "report.md").read_text()
    assert "RuntimeError: kaput" in report and "1/1 claims hold" in report


def test_process_pool_matches_serial():
    items = list(range(7))
    assert parallel_map(_square, items, workers=2, progress=False) == [x * x for x in items]
    assert parallel_map(_square, items, workers=1, progress=False) == [x * x for x in items]


def test_dask_scheduler_matches_serial():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        got = parallel_map(_square, list(range(5)), scheduler=cluster.scheduler_address, progress=False)
        ctx = Context(scheduler=cluster.scheduler_address, progress=False)
        seeds = ctx.seeds("x", 3)
        assert ctx.map(_square, seeds) == [s * s for s in seeds]
    assert got == [0, 1, 4, 9, 16]


def test_context_seeds_depend_only_on_seed_and_tag():
    a, b = Context(seed=1), Context(seed=1, workers=4)
    assert a.seeds("t", 4) == b.seeds("t", 4) != Context(seed=2).seeds("t", 4)
    assert np.array_equal(a.rng("t").random(3), b.rng("t").random(3))
