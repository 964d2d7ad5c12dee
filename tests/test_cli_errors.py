"""Every bad input to ``specot`` exits 2 with exactly one line on stderr (never a traceback), work
whose size is known up front is refused before it starts, and an unexpected exception is reported in
one line with exit 1 (``--debug`` shows the traceback). Regression tests of issue 11 items 7-8."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from specot import cli
from specot.cli import main


def one_line_error(capsys, argv, code=2, seconds=30.0) -> str:
    t0 = time.perf_counter()
    assert main(argv) == code
    elapsed = time.perf_counter() - t0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert elapsed < seconds, f"{argv} took {elapsed:.1f} s before refusing"
    return lines[0]


# ------------------------------------------------------------------------------ --out
def test_compare_random_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    line = one_line_error(capsys, ["compare", "--random", "2", "--vocab", "3", "-k", "1", "--out", str(f)])
    assert "not a directory" in line
    line = one_line_error(capsys, ["compare", "--random", "2", "--vocab", "3", "-k", "1",
                                   "--out", str(f / "sub")])
    assert "is a file" in line
    assert f.read_text() == "x"


def test_reproduce_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert "not a directory" in one_line_error(capsys, ["reproduce", "--only", "leviathan", "--out", str(f)])
    assert "is a file" in one_line_error(capsys, ["reproduce", "--only", "leviathan",
                                                  "--out", str(f / "a" / "b")])


# ------------------------------------------------------------------------------ inputs
def test_solve_json_path_is_a_directory(tmp_path, capsys):
    d = tmp_path / "dir.json"
    d.mkdir()
    assert "not a file" in one_line_error(capsys, ["solve", "--p", str(d), "--q", "0.5,0.5"])


def test_complex_arrays_are_refused(tmp_path, capsys):
    f = tmp_path / "p.npy"
    np.save(f, np.array([0.5 + 1j, 0.5 - 1j]))
    assert "complex" in one_line_error(capsys, ["solve", "--p", str(f), "--q", "0.5,0.5"])
    assert "complex" in one_line_error(capsys, ["compare", "--p", str(f), "--q", "0.5,0.5", "-k", "1"])
    g = tmp_path / "s.npy"
    np.save(g, np.array(["a", "b"]))
    assert "real numbers" in one_line_error(capsys, ["solve", "--p", str(g), "--q", "0.5,0.5"])


@pytest.mark.parametrize("argv, word", [
    (["compare", "--p", "0.5,0.5", "--q", "0.5,0.5", "--laws", ""], "--laws is empty"),
    (["compare", "--p", "0.5,0.5", "--q", "0.5,0.5", "-k", ""], "--k is empty"),
    (["compare", "--p", "0.5,0.5", "--q", "0.5,0.5", "-k", ","], "--k is empty"),
    (["compare", "--p", "", "--q", "0.5,0.5"], "--p is empty"),
    (["simulate", "--vocab", "0"], "--vocab must be >= 1"),
    (["simulate", "--vocab", "1"], "--vocab must be >= 2"),
    (["verify", "--steps", "0"], "--steps must be >= 1"),
])
def test_empty_or_zero_arguments(argv, word, capsys):
    assert word in one_line_error(capsys, argv)


def test_negative_values_reach_validation(capsys):
    # argparse alone says "expected one argument"; now the value is read and validated
    line = one_line_error(capsys, ["solve", "--p", "-0.1,0.6,0.5", "--q", "0.2,0.3,0.5"])
    assert "negative" in line
    line = one_line_error(capsys, ["solve", "--p=-0.1,0.6,0.5", "--q", "0.2,0.3,0.5"])
    assert "negative" in line
    assert "k must be" in one_line_error(capsys, ["solve", "--p", "0.5,0.5", "--q", "0.5,0.5", "-k", "-1"])


def test_argparse_errors_are_one_line(capsys):
    assert "invalid int value" in one_line_error(capsys, ["solve", "--p", "1", "--q", "1", "-k", "x"])
    assert "required" in one_line_error(capsys, ["solve"])
    assert "invalid choice" in one_line_error(capsys, ["nope"])


# ------------------------------------------------------------------------------ sizes known up front
def test_lp_that_cannot_finish_is_refused(capsys):
    line = one_line_error(capsys, ["solve", "--p", "0.5,0.5", "--q", "0.5,0.5", "-k", "1000000"], seconds=10)
    assert "--backend none" in line
    assert main(["solve", "--p", "0.5,0.5", "--q", "0.5,0.5", "-k", "1000000", "--backend", "none",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["optimum"] == pytest.approx(1.0)


def test_compare_huge_vocabulary_is_refused_before_work(tmp_path, capsys):
    V = 20_000  # V^2 float64 = 3 GiB for gumbel's exact acceptance at k >= 2
    rng = np.random.default_rng(0)
    for name in ("p", "q"):
        np.save(tmp_path / f"{name}.npy", rng.dirichlet(np.ones(V)))
    line = one_line_error(capsys, ["compare", "--p", str(tmp_path / "p.npy"), "--q", str(tmp_path / "q.npy")],
                          seconds=10)
    assert "gumbel" in line and "--laws" in line


def test_simulate_huge_vocabulary_is_refused(capsys):
    line = one_line_error(capsys, ["simulate", "--vocab", "1000000"], seconds=10)
    assert "GiB" in line and "--vocab" in line


def test_simulate_gumbel_exact_dp_is_routed_up_front(capsys):
    t0 = time.perf_counter()
    assert main(["simulate", "--selector", "gumbel", "-k", "4", "-R", "20", "-T", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exact"] is None and "exact DP skipped" in out["note"]
    assert time.perf_counter() - t0 < 60


# ------------------------------------------------------------------------------ bugs vs bad input
def test_unexpected_exception_is_one_line_exit_1(monkeypatch, capsys):
    from specot.commands import solve

    def boom(args):
        raise RuntimeError("a bug\nwith two lines")

    monkeypatch.setattr(solve, "run", boom)
    line = one_line_error(capsys, ["solve", "--p", "1", "--q", "1"], code=1)
    assert "RuntimeError" in line and "--debug" in line
    with pytest.raises(RuntimeError):
        main(["--debug", "solve", "--p", "1", "--q", "1"])


def test_join_negative_values():
    assert cli._join_negative_values(["--p", "-0.1,0.6", "-k", "-2", "--json"]) == \
        ["--p=-0.1,0.6", "-k-2", "--json"]
    assert cli._join_negative_values(["--p", "0.5", "--q", "-1e-3,1"]) == ["--p", "0.5", "--q=-1e-3,1"]


# ------------------------------------------------------------------------------ compare --random resume
def test_compare_random_writes_pairs_as_it_goes_and_resumes(tmp_path, capsys, monkeypatch):
    from specot import compare as cmp_mod

    argv = ["compare", "--random", "4", "--vocab", "4", "-k", "1,2", "--laws", "iid", "--seed", "3",
            "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    full = json.loads(capsys.readouterr().out)["records"]
    lines = (tmp_path / "compare.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 4
    # an interrupted run left 2 pairs: resume computes only the other 2 and gives the same records
    (tmp_path / "compare.jsonl").write_text("\n".join(lines[:3]) + "\n")
    real, calls = cmp_mod.compare_selectors, []
    monkeypatch.setattr(cmp_mod, "compare_selectors", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main([*argv, "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == full and len(calls) == 2
    assert "other options" in one_line_error(capsys, [*argv[:-1], "--seed", "4", "--resume"])
