"""PEP 562 lazy attribute loading for the package ``__init__`` modules."""

from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str]):
    """Return a module ``__getattr__`` that imports ``name`` from ``package.<exports[name]>`` on use."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
