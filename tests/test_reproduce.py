"""``specot reproduce``: the pipeline writes figures and report.md, claims are computed and checked
(each with a category and the result that would fail it), exceptions fail loudly, ``--check``
reports what moved, sweeps run in processes and on a dask cluster with the same results, bad
options exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from specot import cli
from specot.io import dump_json
from specot.reproduce import Claim, Context, ExperimentResult, reproduce, run_experiment
from specot.reproduce.check import compare_reports, values_moved
from specot.reproduce.common import chi2_power, draws_for_power, worst_alternative
from specot.reproduce.core import CATEGORIES, EXPERIMENTS, OptionalMissing, missing_pieces, validate_names
from specot.reproduce.parallel import parallel_map
from specot.reproduce.report import CLAIMS_HEADER

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
    assert CLAIMS_HEADER in report


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
            assert set(c) == {"paper", "statement", "category", "paper_value", "our_value", "holds", "fails_if",
                              "note"}
            assert c["category"] in CATEGORIES and c["fails_if"].strip()
            # a claim that does not hold must say why
            assert c["holds"] or c["note"], c
        counted = {cat: sum(c["category"] == cat for c in exp["claims"]) for cat in CATEGORIES}
        assert {cat: v["claims"] for cat, v in exp["counts"].items()} == {k: v for k, v in counted.items() if v}
    assert data["headline"].startswith(
        f"{sum(v['holding'] for k, v in data['categories'].items() if k != 'consistency')}/")


def test_theory_and_leviathan_claims_hold(cheap_run):
    """The theorem checks and reproductions of Yin et al. and Leviathan et al. hold (consistency
    checks on the papers' own numbers, Table 2 / Chen et al., are allowed to fail, with a note)."""
    _, out = cheap_run
    data = json.loads((out / "report.json").read_text())
    for exp in data["experiments"]:
        assert any(c["category"] == "theorem" for c in exp["claims"])
        for c in exp["claims"]:
            if c["category"] == "consistency":
                continue
            assert c["holds"], (exp["name"], c["statement"], c["our_value"])


def test_summary_line_counts_per_category_never_ok_with_failures(cheap_run, capsys, tmp_path):
    assert cli.main(["reproduce", "--only", "leviathan", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("leviathan:"))
    assert "theorem" in line and "consistency" in line and " ok " not in f" {line} "
    data = json.loads((tmp_path / "report.json").read_text())
    fails = sum(not c["holds"] for c in data["experiments"][0]["claims"])
    assert (f"({fails} FAILING)" in line) == (fails > 0)


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
    c = Claim.close("P", "s", 2.0, 2.004, atol=0.005, category="consistency")
    assert c.holds and "atol 0.005" in c.note and c.fails_if == "|ours - 2| > 0.005"
    assert not Claim.close("P", "s", 2.0, 2.01, atol=0.005, category="theorem").holds
    assert Claim("P", "s", None, 1.23456789, True, category="theorem", fails_if="x").our_text == "1.235"


@pytest.mark.parametrize("kwargs, needle", [({"category": "ok", "fails_if": "x"}, "category"),
                                            ({"category": "theorem", "fails_if": " "}, "fails_if"),
                                            ({"fails_if": "x"}, "category")])
def test_claim_needs_category_and_fails_if(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Claim("P", "s", 1, 1, True, **kwargs)


def test_failing_experiment_is_reported_not_fatal(tmp_path, monkeypatch):
    from specot.reproduce import runner

    def boom(ctx):
        raise RuntimeError("kaput")

    def fine(ctx):
        res = ExperimentResult()
        res.claims.append(Claim("P", "s", 1, 1, True, category="theorem", fails_if="1 != 1"))
        return res

    def optional(ctx):
        raise OptionalMissing("optional dependency 'torch' is not installed (pip install 'specot[torch]')")

    table = {"block": boom, "leviathan": fine, "optimal": optional}
    monkeypatch.setattr(runner, "experiment_function", lambda name: table[name])
    monkeypatch.setattr(runner, "missing_pieces", lambda name: ["markov.nothing"] if name == "theory" else [])
    runs = reproduce(["block", "leviathan", "optimal", "theory"], Context(progress=False), tmp_path)
    assert {r.name: r.status for r in runs} == {"block": "error", "leviathan": "ok", "optimal": "skipped",
                                                "theory": "error"}
    report = (tmp_path / "report.md").read_text()
    assert "RuntimeError: kaput" in report and "1/1 theorem" in report
    assert "specot[torch]" in report and "markov.nothing" in report
    assert next(r for r in runs if r.name == "block").summary_line().startswith("block: ERROR: RuntimeError: kaput")


def test_a_broken_selector_raises_instead_of_being_dropped(monkeypatch):
    """acceptance_table returns NaN only where a method is undefined (distinct drafts, k > |supp q|)
    or not computed (k above MAX_K); a selector that fails raises (it used to be left out silently)."""
    from specot.reproduce import common

    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.6, 0.4, 0.0])
    out = common.acceptance_table((p, q, [1, 2, 3], ["rrs_wor", "kseq"]))
    assert np.isnan(out["rrs_wor"][2]) and not np.isnan(out["rrs_wor"][1])
    assert not np.isnan(out["kseq"]).any()

    def broken(method, p, q, k):
        raise RuntimeError(f"{method} is broken")

    monkeypatch.setattr(common, "acceptance", broken)
    with pytest.raises(RuntimeError, match="kseq is broken"):
        common.acceptance_table((p, q, [2], ["kseq"]))


def test_check_reports_what_moved():
    claim = {"paper": "P", "statement": "s with 100 runs", "category": "theorem", "paper_value": 0.5,
             "our_value": "0.6246 / 0.6560", "holds": True, "fails_if": "x", "note": ""}
    old = {"mode": "quick", "seed": 0, "experiments": [{"name": "e", "status": "ok", "claims": [claim]}]}
    assert compare_reports(old, old) == []
    moved = json.loads(json.dumps(old))
    c = moved["experiments"][0]["claims"][0]
    c.update(statement="s with 200 runs", our_value="0.6246 / 0.6570", holds=False)
    lines = compare_reports(old, moved)
    assert len(lines) == 1 and "now FAILS" in lines[0] and "0.6570" in lines[0]
    assert not values_moved(1.0, 1.0 + 1e-12) and values_moved(1.0, 1.001) and values_moved("a", "b")
    gone = {"mode": "quick", "seed": 1, "experiments": [{"name": "e", "status": "error", "claims": []}]}
    lines = compare_reports(old, gone)
    assert any("seed" in s for s in lines) and any("status ok -> error" in s for s in lines)
    assert any("claim gone" in s for s in lines)


def test_check_flag_compares_with_a_committed_report(cheap_run, tmp_path, capsys):
    if "leviathan" not in CHEAP:
        pytest.skip("markov.speedup missing")
    first = tmp_path / "first"
    assert cli.main(["reproduce", "--only", "leviathan", "--out", str(first)]) == 0
    capsys.readouterr()
    assert cli.main(["reproduce", "--only", "leviathan", "--out", str(tmp_path / "again"),
                     "--check", str(first / "report.json")]) == 0
    assert "nothing moved" in capsys.readouterr().out
    data = json.loads((first / "report.json").read_text())
    data["experiments"][0]["claims"][0]["holds"] = not data["experiments"][0]["claims"][0]["holds"]
    (first / "report.json").write_text(json.dumps(data))
    assert cli.main(["reproduce", "--only", "leviathan", "--out", str(tmp_path / "again"),
                     "--check", str(first / "report.json")]) == 1
    assert "1 change(s)" in capsys.readouterr().out


def test_chi2_power_matches_simulation():
    """The power computation used to size the optimal verifier's sampling test: at the computed n,
    a 1% TV error is detected about as often as predicted (2000 simulated tests, level 1e-3 so that
    rejections are not too rare to count)."""
    from scipy.stats import chisquare

    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(12))
    alt = worst_alternative(p, 0.01)
    assert abs(alt.sum() - 1) < 1e-15 and 0.5 * np.abs(alt - p).sum() == pytest.approx(0.01)
    n = draws_for_power(p, alt, power=0.5, alpha=1e-3)
    assert chi2_power(n, p, alt, 1e-3) >= 0.5 > chi2_power(int(n * 0.9), p, alt, 1e-3)
    counts = rng.multinomial(n, alt, size=2000)
    rejected = np.mean([chisquare(c, n * p).pvalue < 1e-3 for c in counts])
    assert abs(rejected - chi2_power(n, p, alt, 1e-3)) < 0.05  # 2000 draws: SE of a rate near 0.5 is 0.011


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


def test_claims_fail_on_a_wrong_implementation(monkeypatch):
    """Mutation checks: a slightly wrong library (Thm 3.1 off by alpha^gamma, RRS off by 1e-6) makes
    the claims that check it fail, so they are not claims that cannot fail."""
    import markov.speedup as sp

    from specot.reproduce import common, multidraft

    right = sp.expected_tokens_per_step
    monkeypatch.setattr(sp, "expected_tokens_per_step", lambda a, g: right(a, g) - 1e-9 * np.asarray(a) ** g)
    res = run_experiment("leviathan", Context(progress=False))
    assert [c.holds for c in res.claims if "Thm 3.1" in c.paper] == [False]
    monkeypatch.undo()

    exact = common.acceptance

    def off(method, p, q, k):
        return exact(method, p, q, k) + (1e-6 if method == "rrs" else 0.0)

    monkeypatch.setattr(common, "acceptance", off)
    monkeypatch.setattr(multidraft, "acceptance", off)
    res = ExperimentResult()
    multidraft._worked_examples(res)
    examples = [c for c in res.claims if "optima, RRS and naive" in c.statement]
    assert len(examples) == 4 and not any(c.holds for c in examples)


# ---------------------------------------------------------------- saved results and --resume
class FakeRegistry:
    """Stand-in experiments under real registry names (fast): each call is counted; ``behaviour``
    maps a name to ``"ok"`` (one claim, one small figure), an exception instance to raise, or a
    callable ``ctx -> ExperimentResult``."""

    def __init__(self, monkeypatch, behaviour: dict):
        from specot.reproduce import runner

        self.behaviour = dict(behaviour)
        self.calls = {name: 0 for name in behaviour}
        monkeypatch.setattr(runner, "experiment_function", self.function)
        monkeypatch.setattr(runner, "missing_pieces", lambda name: [])

    def function(self, name):
        def run(ctx):
            self.calls[name] += 1
            what = self.behaviour[name]
            if isinstance(what, BaseException):
                raise what
            if callable(what):
                return what(ctx)
            from matplotlib.figure import Figure

            res = ExperimentResult()
            fig = Figure(figsize=(1, 1))
            fig.add_subplot().plot([0, 1], [ctx.seed, 1])
            res.add_figure("curve", fig, f"a curve of {name}")
            res.claims.append(Claim("P", f"{name} holds", 0.5, 0.25 + ctx.seed, True, category="theorem",
                                    fails_if="never"))
            res.notes.append(f"seed {ctx.seed}")
            res.data["values"] = np.arange(3) * (ctx.seed + 1)
            return res

        return run


NAMES = ["leviathan", "theory", "block"]


def _saved(out, name):
    return json.loads((out / "experiments" / f"{name}.json").read_text())


def test_each_finished_experiment_is_saved_and_resume_skips_it(monkeypatch, tmp_path, capsys):
    fake = FakeRegistry(monkeypatch, {n: "ok" for n in NAMES})
    assert cli.main(["reproduce", "--only", *NAMES, "--out", str(tmp_path)]) == 0
    first = json.loads((tmp_path / "report.json").read_text())
    err = capsys.readouterr().err
    assert "[1/3] leviathan: running" in err and "[3/3] block: 1/1 theorem" in err  # one progress line each
    for name in NAMES:
        saved = _saved(tmp_path, name)
        assert saved["status"] == "ok"
        assert saved["settings"]["seed"] == 0 and saved["settings"]["mode"] == "quick"
        assert saved["files"] == [f"{name}/curve.png", f"{name}/curve.svg"]
    assert fake.calls == {n: 1 for n in NAMES}

    assert cli.main(["reproduce", "--only", *NAMES, "--out", str(tmp_path), "--resume"]) == 0
    out, err = capsys.readouterr()
    assert fake.calls == {n: 1 for n in NAMES}  # nothing ran again
    assert err.count("resumed from") == 3 and "running" not in err and out.count(", resumed]") == 3
    again = json.loads((tmp_path / "report.json").read_text())
    for report in (first, again):  # the report assembled from saved results is the report of the run
        report.pop("seconds")
        for e in report["experiments"]:
            assert e.pop("resumed") is (report is again)
    assert again == first
    assert "ok (resumed)" in (tmp_path / "report.md").read_text()


def test_resume_reruns_a_result_with_other_settings(monkeypatch, tmp_path, capsys):
    from specot.reproduce import store

    fake = FakeRegistry(monkeypatch, {n: "ok" for n in NAMES})
    reproduce(NAMES, Context(progress=False), tmp_path)
    lines = []
    runs = reproduce(NAMES, Context(seed=1, progress=False), tmp_path, resume=True, log=lines.append)
    assert fake.calls == {n: 2 for n in NAMES} and not any(r.resumed for r in runs)
    assert sum("saved result not reused (settings differ: seed 0 -> 1)" in s for s in lines) == 3
    assert _saved(tmp_path, "theory")["settings"]["seed"] == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["experiments"][0]["claims"][0]["our_value"] == 1.25

    # quick vs full, an edited experiment module, a figure gone, a torn file: each runs again
    assert cli.main(["reproduce", "--only", "leviathan", "--out", str(tmp_path), "--seed", "1", "--full",
                     "--resume"]) == 0
    assert "settings differ: mode 'quick' -> 'full'" in capsys.readouterr().err
    full = Context(seed=1, quick=False, progress=False)
    assert [r.resumed for r in reproduce(NAMES, full, tmp_path, resume=True)] == [True, False, False]
    real = store._source_hash
    monkeypatch.setattr(store, "_source_hash", lambda name: "edited" if name == "theory" else real(name))
    (tmp_path / "block" / "curve.svg").unlink()
    runs = reproduce(NAMES, full, tmp_path, resume=True, log=lines.append)
    assert [r.resumed for r in runs] == [True, False, False]
    assert any("source_sha256" in s and "edited" in s for s in lines)
    assert any("figure file missing: block/curve.svg" in s for s in lines)
    assert fake.calls == {"leviathan": 3, "theory": 4, "block": 4}
    (tmp_path / "experiments" / "block.json").write_text('{"format": 1, "name": "blo')
    runs = reproduce(NAMES, full, tmp_path, resume=True, log=lines.append)
    assert [r.resumed for r in runs] == [True, True, False] and "saved result unreadable" in lines[-3]


def test_a_failing_experiment_keeps_earlier_results_and_exits_nonzero(monkeypatch, tmp_path, capsys):
    fake = FakeRegistry(monkeypatch, {"leviathan": "ok", "theory": RuntimeError("kaput"), "block": "ok"})
    assert cli.main(["reproduce", "--only", *NAMES, "--out", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "theory: ERROR: RuntimeError: kaput" in out and "[2/3] theory: ERROR: RuntimeError: kaput" in err
    assert _saved(tmp_path, "leviathan")["status"] == "ok" and _saved(tmp_path, "block")["status"] == "ok"
    assert _saved(tmp_path, "theory")["status"] == "error"  # recorded as failed, never "skipped"
    report = json.loads((tmp_path / "report.json").read_text())
    assert [e["status"] for e in report["experiments"]] == ["ok", "error", "ok"]

    # --resume runs only the failed one (an error is never reused); fixed, the run exits 0
    fake.behaviour["theory"] = "ok"
    assert cli.main(["reproduce", "--only", *NAMES, "--out", str(tmp_path), "--resume"]) == 0
    assert fake.calls == {"leviathan": 1, "theory": 2, "block": 1}
    assert "saved result not reused (saved result has status 'error')" in capsys.readouterr().err


def test_an_interrupted_run_keeps_what_finished(monkeypatch, tmp_path, capsys):
    fake = FakeRegistry(monkeypatch, {"leviathan": "ok", "theory": KeyboardInterrupt(), "block": "ok"})
    assert cli.main(["reproduce", "--only", *NAMES, "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "theory: interrupted" in err and "1 finished experiment(s) kept" in err
    assert fake.calls == {"leviathan": 1, "theory": 1, "block": 0}
    assert sorted(p.name for p in (tmp_path / "experiments").iterdir()) == ["leviathan.json"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(e["name"], e["status"]) for e in report["experiments"]] == [("leviathan", "ok"),
                                                                          ("theory", "interrupted")]
    assert "**interrupted**" in (tmp_path / "report.md").read_text()
    fake.behaviour["theory"] = "ok"
    assert cli.main(["reproduce", "--only", *NAMES, "--out", str(tmp_path), "--resume"]) == 0
    assert fake.calls == {"leviathan": 1, "theory": 2, "block": 1}


def test_without_resume_saved_results_are_overwritten(monkeypatch, tmp_path):
    fake = FakeRegistry(monkeypatch, {n: "ok" for n in NAMES})
    reproduce(NAMES[:2], Context(progress=False), tmp_path)
    lines = []
    reproduce(NAMES[1:], Context(seed=2, progress=False), tmp_path, log=lines.append)
    assert fake.calls == {"leviathan": 1, "theory": 2, "block": 1}
    assert "saved results of 1 of these experiments are overwritten" in lines[0]
    assert _saved(tmp_path, "theory")["settings"]["seed"] == 2
    assert _saved(tmp_path, "leviathan")["settings"]["seed"] == 0  # not named: left alone
    assert [e["name"] for e in json.loads((tmp_path / "report.json").read_text())["experiments"]] == NAMES[1:]


def test_saved_files_are_written_atomically(monkeypatch, tmp_path):
    """A write cut short (here: interrupted before the rename) leaves the previous file intact and
    no temporary file behind; every file in experiments/ is complete JSON."""
    from specot import io as specot_io
    from specot.reproduce import store

    target = tmp_path / "x.json"
    specot_io.atomic_write_text(target, '{"old": 1}')

    def cut(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(specot_io.os, "fsync", cut)
    with pytest.raises(KeyboardInterrupt):
        specot_io.atomic_write_text(target, '{"new": 2, "long": "' + "x" * 100_000 + '"}')
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    monkeypatch.undo()

    FakeRegistry(monkeypatch, {n: "ok" for n in NAMES})
    reproduce(NAMES, Context(progress=False), tmp_path / "run")
    for path in (tmp_path / "run" / "experiments").iterdir():
        assert not path.name.startswith(".") and json.loads(path.read_text())["format"] == store.FORMAT


@pytest.mark.parametrize("argv, needle", [
    (["--resume", "--check", "{out}/report.json"], "is the report this run rewrites"),
    (["--check", "{out}/report.json"], "is the report this run rewrites"),
    (["--resume", "--check", "{out}/missing.json"], "--check: no report at"),
    (["--resume", "--out", "{out}/report.json"], "exists and is not a directory"),
])
def test_resume_and_check_combinations_exit_2_before_any_work(argv, needle, monkeypatch, tmp_path, capsys):
    fake = FakeRegistry(monkeypatch, {n: "ok" for n in NAMES})
    (tmp_path / "report.json").write_text("{}")
    argv = [a.replace("{out}", str(tmp_path)) for a in argv]
    out_args = [] if "--out" in argv else ["--out", str(tmp_path)]
    assert cli.main(["reproduce", "--only", *NAMES, *out_args, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert fake.calls == {n: 0 for n in NAMES}


def test_resume_with_nothing_saved_runs_everything(monkeypatch, tmp_path):
    fake = FakeRegistry(monkeypatch, {n: "ok" for n in NAMES})
    lines = []
    runs = reproduce(NAMES, Context(progress=False), tmp_path / "new", resume=True, log=lines.append)
    assert [r.status for r in runs] == ["ok"] * 3 and fake.calls == {n: 1 for n in NAMES}
    assert "no saved experiment results to resume; running all 3" in lines[0]
