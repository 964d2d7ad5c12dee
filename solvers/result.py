"""One result protocol for every solver in :mod:`solvers` (scipy's ``OptimizeResult`` is the model).

Every solver result is a frozen dataclass deriving from :class:`SolverResult` and carries

* ``value`` -- the optimum (the one name for it across specot);
* ``success`` -- ``True`` when the solver reports an optimum *and* specot's own checks hold;
* ``status`` -- an ``int``, ``0`` = ok (see :data:`STATUS`);
* ``message`` -- a one-line human-readable description.

A result with ``success=False`` is only ever returned together with a :class:`RuntimeWarning`
(:func:`warn_if_failed`): a solver never hands back a silently wrong number. Results can also be
read like a mapping (``res["value"]``, ``res.keys()``), as ``scipy.optimize.OptimizeResult`` can.
See docs/numerics.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Any

#: status codes shared by the solvers
STATUS = {
    0: "optimal",
    1: "iteration or time limit reached",
    2: "the solver reported a non-optimal status",
    3: "the result failed specot's own check (certificate gap, quadrature error estimate)",
}


@dataclass(frozen=True, kw_only=True)
class SolverResult:
    """Base of every solver result: ``value``, ``success``, ``status`` (0 = ok), ``message``."""

    value: Any
    success: bool = True
    status: int = 0
    message: str = "optimal"

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def keys(self) -> list[str]:
        """Field names (``OptimizeResult``-style mapping access)."""
        return [f.name for f in fields(self)]


def warn_if_failed(result: SolverResult, stacklevel: int = 3) -> SolverResult:
    """Emit a :class:`RuntimeWarning` when ``result.success`` is false; return ``result``."""
    if not result.success:
        warnings.warn(f"{type(result).__name__}: {result.message} (status {result.status})",
                      RuntimeWarning, stacklevel=stacklevel)
    return result


_UNSET = object()


def renamed_argument(new_value, old_value, old: str, new: str, default):
    """Resolve a keyword renamed ``old -> new`` (issue 12: one name per concept).

    ``old`` still works with a :class:`DeprecationWarning`; giving both is a ``ValueError``.
    """
    if old_value is _UNSET:
        return default if new_value is _UNSET else new_value
    if new_value is not _UNSET:
        raise ValueError(f"give {new}= only ({old}= is its deprecated old name)")
    warnings.warn(f"{old}= is deprecated, use {new}=", DeprecationWarning, stacklevel=3)
    return old_value


def deprecated_alias(new: str, old: str) -> property:
    """A read-only property ``old`` returning attribute ``new`` with a :class:`DeprecationWarning`."""

    def getter(self):
        warnings.warn(f"{type(self).__name__}.{old} is deprecated, use .{new}", DeprecationWarning,
                      stacklevel=2)
        return getattr(self, new)

    return property(getter, doc=f"Deprecated read-only alias of :attr:`{new}`.")
