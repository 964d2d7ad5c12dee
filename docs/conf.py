"""Sphinx configuration of the specot documentation (MyST Markdown, numpydoc, pydata theme).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` from the repository root.
The notebooks in ``notebooks/`` (jupytext percent format) are copied into ``docs/examples/`` at build
time and read by myst-nb; they are not executed unless ``SPECOT_DOCS_EXECUTE=1`` (then executed in
quick mode and cached).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

project = "specot"
author = "specot developers"
copyright = "2026, specot developers"
release = version = "0.1.0"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

# --- sources -------------------------------------------------------------------------------------
EXAMPLES = DOCS / "examples"


def _copy_notebooks() -> None:
    """Mirror notebooks/*.py into docs/examples/ (generated, git-ignored), keeping mtimes."""
    EXAMPLES.mkdir(exist_ok=True)
    wanted = {p.name for p in (ROOT / "notebooks").glob("*.py")}
    for old in EXAMPLES.glob("*.py"):
        if old.name not in wanted:
            old.unlink()
    for name in wanted:
        src, dst = ROOT / "notebooks" / name, EXAMPLES / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copy2(src, dst)


_copy_notebooks()
# autosummary pages are regenerated on every build, so a moved or deleted module leaves no stale page
shutil.rmtree(DOCS / "api", ignore_errors=True)

nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
exclude_patterns = ["_build", "conf.py", "**.ipynb_checkpoints", "README.md"]
root_doc = "index"

# --- notebooks (myst-nb) -------------------------------------------------------------------------
if os.environ.get("SPECOT_DOCS_EXECUTE") == "1":
    os.environ.setdefault("SPECOT_QUICK", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb_execution_mode = "cache"
    nb_execution_timeout = 300
else:
    nb_execution_mode = "off"
nb_execution_raise_on_error = True

# --- MyST ----------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 4  # GitHub-style slugs for #anchors, the ones cited in code and tests
myst_dmath_double_inline = True

# --- API reference -------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "ignore-module-all": True}
autodoc_typehints = "none"
autodoc_mock_imports = ["transformers", "gguf", "accelerate"]
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()

# --- HTML ----------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "specot"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []
