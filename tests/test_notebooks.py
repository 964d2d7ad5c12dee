"""Every notebook in notebooks/ (jupytext percent format) executes in quick mode.

Each notebook is converted with jupytext and run by nbclient on the ``python3`` kernel of the
current environment, with ``SPECOT_QUICK=1``; a notebook whose experiment needs a library piece
that this build lacks is skipped (named in the skip reason).
"""

from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from specot.reproduce.core import EXPERIMENTS, missing_pieces

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.py"))


def test_one_notebook_per_experiment():
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(EXPERIMENTS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
    missing = missing_pieces(path.stem)
    if missing:
        pytest.skip(f"experiment {path.stem!r} needs {', '.join(missing)}")
    monkeypatch.setenv("SPECOT_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=240,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook displays no figure"
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "claims hold" in text
