"""``specot simulate``: human and JSON output, exact values inside the confidence intervals, errors."""

import json

import pytest

from specot.cli import main


def run_json(capsys, *argv):
    assert main(["simulate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_simulated_next_to_exact(capsys):
    out = run_json(capsys, "--vocab", "6", "--tv-gap", "0.3", "-T", "40", "-R", "1500", "--seed", "3")
    assert out["exact"] is not None and out["note"] == ""
    for key in ("rejections", "target_calls", "block_efficiency", "speedup"):
        sim = out["simulated"][key]
        assert sim["ci95"][0] < sim["mean"] < sim["ci95"][1]
        assert abs(sim["mean"] - out["exact"][key]) <= 4 * sim["se"]


def test_unlimited_lookahead_reports_theorem1(capsys):
    out = run_json(capsys, "--gamma", "inf", "-T", "30", "-R", "500", "--tv-gap", "0.2")
    assert out["gamma"] is None
    assert out["theorem1"]["expected_rejections"] == pytest.approx(30 * 0.2)
    assert out["exact"]["rejections"] == pytest.approx(30 * 0.2)


def test_models_and_algorithms(capsys):
    out = run_json(capsys, "--model", "bernoulli", "--selector", "rrs", "-k", "3", "--gamma", "inf",
                   "--follow", "one", "-T", "20", "-R", "300")
    assert out["k"] == 3 and out["exact"] is not None
    out = run_json(capsys, "--model", "uniform", "--vocab", "20", "--support", "4", "-T", "10", "-R", "100",
                   "--c", "0.05", "--capacity", "4")
    assert out["cost"] == {"c": 0.05, "capacity": 4.0}
    out = run_json(capsys, "--model", "ngram", "--vocab", "24", "--selector", "rrs_wor", "-k", "2", "-T", "10",
                   "-R", "50")
    assert out["exact"] is None and "skipped" in out["note"]


def test_human_output(capsys):
    assert main(["simulate", "-T", "20", "-R", "100", "--gamma", "inf"]) == 0
    text = capsys.readouterr().out
    assert "95% CI" in text and "Theorem 1" in text and "block efficiency" in text


@pytest.mark.parametrize("argv,msg", [
    (["--gamma", "x"], "--gamma"), (["-k", "0"], "k must be"), (["--tv-gap", "0.99"], "tv_gap"),
    (["--selector", "nope"], "unknown selector"), (["-T", "0"], "n_tokens"),
])
def test_errors(capsys, argv, msg):
    assert main(["simulate", *argv, "-R", "10"]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
