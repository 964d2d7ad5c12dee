"""``specot solve``: human and JSON output, file inputs, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from specot.cli import main

EXAMPLE_A = ["--p", "0.5,0.3,0.15,0.05", "--q", "0.2,0.2,0.3,0.3"]


def test_text_output_example_A(capsys):
    assert main(["solve", *EXAMPLE_A, "-k", "2", "--backend", "all"]) == 0
    out = capsys.readouterr().out
    assert "alpha* = 0.8400000000" in out
    assert "{2, 3}" in out
    assert "1 - TV(p, q)     = 0.6000000000" in out
    for name in ("highs", "cvxpy", "maxflow"):
        assert name in out


def test_json_output(capsys):
    assert main(["solve", *EXAMPLE_A, "-k", "3", "--drafts", "without_replacement", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["optimum"] == pytest.approx(1.0, abs=1e-9)
    assert data["k"] == 3 and data["drafts"] == "without_replacement"
    (lp,) = data["backends"]
    assert lp["value"] == pytest.approx(data["optimum"], abs=1e-7)
    assert lp["certificate_value"] == pytest.approx(lp["value"], abs=1e-7)
    assert data["one_minus_tv"] == pytest.approx(0.6)


def test_vectors_from_files(tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.array([0.5, 0.5]))
    (tmp_path / "q.json").write_text("[0.7, 0.3]")
    assert main(["solve", "--p", str(tmp_path / "p.npy"), "--q", str(tmp_path / "q.json"), "-k", "2",
                 "--backend", "none", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["optimum"] == pytest.approx(1.0) and data["cut"] == [] and data["backends"] == []


@pytest.mark.parametrize("argv, word", [
    (["--p", "0.5,0.3", "--q", "0.5,0.5"], "sum to 1"),
    (["--p", "0.5,0.5", "--q", "0.5,0.5", "-k", "0"], "k must be"),
    (["--p", "0.5,abc", "--q", "0.5,0.5"], "--p"),
    (["--p", "0.5,0.5", "--q", "0.2,0.3,0.5"], "same length"),
    (["--p", "0.5,0.5", "--q", "0.5,0.5", "-k", "3", "--drafts", "hub"], "k=2"),
    (["--p", "missing.npy", "--q", "0.5,0.5"], "no such file"),
])
def test_bad_input_one_line_exit_2(argv, word, capsys):
    assert main(["solve", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in captured.err
    assert captured.out == ""


def test_subprocess_entry_point():
    proc = subprocess.run([sys.executable, "-m", "specot", "solve", "--p", "0.5,0.5", "--q", "0.7,0.3",
                           "-k", "2", "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["optimum"] == pytest.approx(1.0)
