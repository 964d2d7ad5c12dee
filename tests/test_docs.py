"""The documentation site builds with warnings as errors (the README's docs command).

Skipped when the ``docs`` extra (sphinx, myst-nb, numpydoc, pydata-sphinx-theme) is not installed;
CI installs it, so there the build is checked on every run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

for _name in ("sphinx", "myst_nb", "numpydoc", "pydata_sphinx_theme", "jupytext"):
    pytest.importorskip(_name)

ROOT = Path(__file__).resolve().parent.parent


def test_docs_build_without_warnings(tmp_path):
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    html = tmp_path / "html"
    for page in ("index", "api", "gallery", "theory/membership_ot", "theory/markov"):
        assert (html / f"{page}.html").is_file(), page
    # the API reference covers every package and the gallery every notebook
    for pkg in ("ot_coupling", "solvers", "markov", "gpu_backend", "specot"):
        assert (html / "api" / f"{pkg}.html").is_file(), pkg
    for nb in (ROOT / "notebooks").glob("*.py"):
        assert (html / "examples" / f"{nb.stem}.html").is_file(), nb.stem
