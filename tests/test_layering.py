"""Layers import only downward: ot_coupling <- solvers <- markov, gpu_backend <- specot.

For each lower package a fresh interpreter imports the package and every submodule of it (found by
:func:`pkgutil.walk_packages`) while a meta-path finder refuses the packages above it, so an import
that runs up the layers (at module level or in a package ``__init__``) fails here. Imports made
inside functions are not executed and so not checked.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: package -> packages it must not import
BLOCKED = {
    "ot_coupling": ("solvers", "markov", "gpu_backend", "specot"),
    "solvers": ("markov", "gpu_backend", "specot"),
    "markov": ("gpu_backend", "specot"),
    "gpu_backend": ("markov", "specot"),
}

SCRIPT = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys
    package, blocked = sys.argv[1], tuple(sys.argv[2].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"layering: {name!r} imported while importing {package}")
            return None

    sys.meta_path.insert(0, Block())
    pkg = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]
    failures = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            failures.append(f"{name}: {exc}")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
    if failures or loaded:
        print("\\n".join(failures + [f"loaded: {m}" for m in loaded]))
        sys.exit(1)
    print(len(names))
""")


@pytest.mark.parametrize("package", sorted(BLOCKED))
def test_lower_package_imports_nothing_above_it(package):
    if package == "gpu_backend":
        pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, package, ",".join(BLOCKED[package])],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert int(proc.stdout.split()[-1]) >= 2  # the package and at least one submodule
