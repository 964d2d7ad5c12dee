"""``specot reproduce --check``: what moved between a committed ``report.json`` and a fresh run.

A run is a pure function of (mode, seed), so with the same mode and seed every claim should come
back with the same status and, up to floating-point noise, the same value. :func:`compare_reports`
lists, per experiment, the claims that appeared or disappeared, changed category or status
(holds / fails), or whose value moved by more than ``rtol |old| + atol`` (numbers inside text
values, e.g. ``"0.6246 / 0.6560"``, are compared one by one). Timings are ignored.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|inf", re.IGNORECASE)


def load_report(path: str | Path) -> dict:
    """The parsed ``report.json`` at ``path`` (``ValueError`` naming the path when absent)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"--check: no report at {path} (commit one from a previous run)")
    return json.loads(path.read_text())


def _numbers(value) -> list[float] | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, list):
        out = []
        for v in value:
            n = _numbers(v)
            if n is None:
                return None
            out += n
        return out
    return [float(m) for m in _NUMBER.findall(str(value))]


def values_moved(old, new, *, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """Whether ``new`` differs from ``old`` beyond ``rtol |old| + atol`` in any number (or in text)."""
    a, b = _numbers(old), _numbers(new)
    if a is None or b is None:
        return old != new
    if len(a) != len(b):
        return True
    for x, y in zip(a, b):
        if math.isnan(x) and math.isnan(y):
            continue
        if math.isinf(x) or math.isinf(y):
            if x != y:
                return True
            continue
        if not abs(x - y) <= rtol * abs(x) + atol:
            return True
    if a == [] and str(old) != str(new):
        return True
    return False


def _key(claim: dict) -> tuple[str, str]:
    # numbers in a statement (sizes of a sweep) do not make it another claim
    return claim.get("paper", ""), _NUMBER.sub("#", claim.get("statement", ""))


def compare_reports(old: dict, new: dict, *, rtol: float = 1e-6, atol: float = 1e-9) -> list[str]:
    """One line per change from report ``old`` to report ``new`` (empty when nothing moved)."""
    lines = []
    for field in ("mode", "seed"):
        if old.get(field) != new.get(field):
            lines.append(f"run {field} differs: {old.get(field)} -> {new.get(field)} (values are not comparable)")
    old_exp = {e["name"]: e for e in old.get("experiments", [])}
    new_exp = {e["name"]: e for e in new.get("experiments", [])}
    for name in new_exp:
        if name not in old_exp:
            lines.append(f"{name}: new experiment (not in the committed report)")
    for name, oe in old_exp.items():
        ne = new_exp.get(name)
        if ne is None:
            continue  # not run this time (--only)
        if oe.get("status") != ne.get("status"):
            lines.append(f"{name}: status {oe.get('status')} -> {ne.get('status')} {ne.get('message', '')}".rstrip())
        oc = {_key(c): c for c in oe.get("claims", [])}
        nc = {_key(c): c for c in ne.get("claims", [])}
        for key, c in nc.items():
            if key not in oc:
                lines.append(f"{name}: new claim [{c.get('category')}] {c['statement']!r}")
        for key, c in oc.items():
            d = nc.get(key)
            if d is None:
                lines.append(f"{name}: claim gone: {c['statement']!r}")
                continue
            what = []
            if c.get("category") != d.get("category"):
                what.append(f"category {c.get('category')} -> {d.get('category')}")
            if c.get("holds") != d.get("holds"):
                what.append("now HOLDS" if d.get("holds") else "now FAILS")
            if values_moved(c.get("our_value"), d.get("our_value"), rtol=rtol, atol=atol):
                what.append(f"ours {c.get('our_value')} -> {d.get('our_value')}")
            if values_moved(c.get("paper_value"), d.get("paper_value"), rtol=rtol, atol=atol):
                what.append(f"paper {c.get('paper_value')} -> {d.get('paper_value')}")
            if what:
                lines.append(f"{name}: {d['statement']!r}: " + "; ".join(what))
    return lines
