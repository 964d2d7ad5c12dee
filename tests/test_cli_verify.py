"""``specot verify --out``: the result JSON is written atomically (temporary file in the same folder,
then :func:`os.replace`), so an interrupted or failed write leaves the previous result whole and no
temporary file behind. The models and the harness are replaced by stand-ins (no model is loaded or
run); the harness itself is tested in tests/test_harness.py."""

from __future__ import annotations

import copy
import json
import os
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

from specot.cli import main

#: what gpu_backend.harness.verify_real_models returns, cut down to two steps of one selector
RESULT = {
    "pair": "bytes",
    "description": "stand-in pair",
    "seconds": 0.5,
    "settings": {"steps": 2, "vocab_size": 3, "temperature": 1.0, "top_k": None, "top_p": None,
                 "n_samples": 0, "lp_support": 16},
    "records": [{"step": s, "k": k, "selectors": {"kseq": {"acceptance": 0.5, "ratio": 0.9}}}
                for s in range(2) for k in (1, 2)],
    "summary": [{"selector": "kseq", "k": k, "steps": 2, "optimum_mean": 0.6, "acceptance_mean": 0.5,
                 "ratio_min": 0.9, "ratio_median": 0.9} for k in (1, 2)],
    "skipped": [],
}
ARGV = ["verify", "--pair", "bytes", "--steps", "2", "--k", "1,2", "--selectors", "kseq", "--gammas", "",
        "--samples", "0", "--no-progress"]


@pytest.fixture
def stand_in_harness(monkeypatch):
    """``load_pair`` and ``verify_real_models`` replaced: ``specot verify`` only writes its outputs
    (and torch's thread count, which the command sets for the process, is restored after)."""
    import torch

    from gpu_backend import harness, models

    monkeypatch.setattr(models, "load_pair", lambda name: SimpleNamespace(vocab_size=3))
    monkeypatch.setattr(harness, "verify_real_models", lambda *a, **k: copy.deepcopy(RESULT))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _leftovers(out) -> list[str]:
    return sorted(p.name for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp"))


def test_verify_json_is_written_atomically(stand_in_harness, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    renamed = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: renamed.append((src, dst)) or replace(src, dst))
    assert main([*ARGV, "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    path = out / "verify_bytes.json"
    assert str(path) in printed["files"]
    data = json.loads(path.read_text())                       # valid JSON, the whole result
    assert data == {key: v for key, v in printed.items() if key != "files"} == RESULT
    assert [dst for _, dst in renamed if os.fspath(dst) == os.fspath(path)]   # renamed into place
    assert _leftovers(out) == []


def test_failed_verify_json_write_keeps_the_previous_result(stand_in_harness, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main([*ARGV, "--out", str(out)]) == 0
    path = out / "verify_bytes.json"
    before = path.read_text()

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    changed = {**RESULT, "description": "a second run"}
    from gpu_backend import harness

    monkeypatch.setattr(harness, "verify_real_models", lambda *a, **k: copy.deepcopy(changed))
    capsys.readouterr()
    assert main([*ARGV, "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert path.read_text() == before and json.loads(before)["description"] == "stand-in pair"
    assert _leftovers(out) == []
