"""``specot sequence``: text and JSON output, exact values consistent with the verifiers, one-line
errors with exit code 2 before any work."""

import json

import pytest

from ot_coupling import get_sequence_verifier
from specot.cli import main
from specot.commands.sequence import VERIFIERS, build_pair


def test_json_output_matches_verifiers(capsys):
    assert main(["sequence", "--model", "random", "-V", "3", "-L", "2", "-k", "2", "--seed", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["V"], data["L"], data["k"], data["seed"]) == (3, 2, 2, 4)
    assert [r["verifier"] for r in data["verifiers"]] == list(VERIFIERS)
    target, draft, _ = build_pair("random", 3, 4)
    for r in data["verifiers"]:
        exact = get_sequence_verifier(r["verifier"]).expected_length(target, draft, 2, 2)
        assert r["expected_length"] == pytest.approx(exact, abs=1e-12)
        assert 1.0 <= r["expected_length"] <= data["upper_bound"] + 1e-9
        if data["optimum"] is not None:
            assert r["expected_length"] <= data["optimum"] + 1e-7
            assert r["share_of_gain"] == pytest.approx((r["expected_length"] - 1) / (data["optimum"] - 1))
        else:
            assert r["share_of_gain"] is None and data["optimum_note"]


def test_text_output(capsys):
    assert main(["sequence", "--model", "ngram", "-V", "3", "-L", "2", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "LP optimum" in out and "upper bound 1 + sum_t alpha_t" in out
    for name in VERIFIERS:
        assert f"\n{name} " in out


@pytest.mark.parametrize("argv,msg", [
    (["-V", "1"], "-V must be"),
    (["-V", "17"], "-V must be"),
    (["-L", "0"], "-L must be"),
    (["-k", "0"], "-k must be"),
    (["--seed", "-1"], "--seed must be"),
    (["-V", "8", "-L", "3", "-k", "3"], "enumeration"),
])
def test_bad_arguments_exit_2_with_one_line(argv, msg, capsys):
    assert main(["sequence", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert msg in err and "\n" not in err
