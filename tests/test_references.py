"""Every reference points into the repository's docs/ or to a paper, and every docs anchor resolves.

1. No file of the repository (``.py``, ``.md``, ``.toml``) cites a document that is not part of it:
   the research notes (``research/...``, ``multidraft.md``, ``theory.md``, ``peers.md``,
   ``sequence.md``, the research note ``optimal_verifier.md``), ``DESIGN.md`` or ``../shared``.
2. Every ``docs/<path>.md`` or ``docs/<path>.md#<slug>`` reference names an existing page and, with
   a slug, an existing heading of it (GitHub-style slug: lowercase, punctuation dropped, spaces to
   hyphens; repeated headings get ``-1``, ``-2``, ...).
3. Relative Markdown links between the docs pages (``[text](page.md#slug)``) resolve the same way.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "node_modules", "specot-out", "out",
             "__pycache__", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints"}
GENERATED = ("docs/_build", "docs/api", "docs/examples", "docs/jupyter_execute")
SELF = Path(__file__).resolve()

#: references to documents outside the repository
OUTSIDE = re.compile(
    r"research/|\.\./shared|shared/research|DESIGN\.md"
    r"|(?<![\w/.-])(?:multidraft|theory|peers|sequence)\.md"
    r"|(?<![\w.-])(?<!docs/theory/)optimal_verifier\.md"
)
DOCS_REF = re.compile(r"docs/([\w./-]+?\.md)(?:#([\w-]+))?")
MD_LINK = re.compile(r"\]\(([\w./-]+?\.md)(?:#([\w-]+))?\)")


def repo_files() -> list[Path]:
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS for part in rel.parts) or rel.as_posix().startswith(GENERATED):
            continue
        if path.is_file() and path.suffix in {".py", ".md", ".toml"} and path.resolve() != SELF:
            out.append(path)
    return sorted(out)


def slugify(title: str) -> str:
    """GitHub's heading anchor: lowercase, drop punctuation (keep word chars, spaces, hyphens)."""
    title = re.sub(r"[`*]", "", title.strip().lower())
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            continue
        m = re.match(r"(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if fence or not m:
            continue
        slug = slugify(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return frozenset(out)


def check_target(page: Path, slug: str | None) -> str | None:
    if not page.is_file():
        return "no such page"
    if slug and slug not in anchors(page):
        return f"no heading with slug {slug!r} (have: {', '.join(sorted(anchors(page)))})"
    return None


FILES = repo_files()


def test_files_found():
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert "ot_coupling/__init__.py" in names and "docs/theory/membership_ot.md" in names


def test_no_reference_to_outside_documents():
    bad = []
    for path in FILES:
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in OUTSIDE.finditer(line):
                bad.append(f"{path.relative_to(ROOT)}:{no}: {m.group(0)!r} in {line.strip()[:120]}")
    assert not bad, "references to documents outside the repository:\n" + "\n".join(bad)


def test_docs_references_resolve():
    bad = []
    for path in FILES:
        is_doc = path.is_relative_to(ROOT / "docs")
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            targets = [(ROOT / "docs" / m.group(1), m.group(2)) for m in DOCS_REF.finditer(line)]
            if is_doc:
                targets += [((path.parent / m.group(1)).resolve(), m.group(2))
                            for m in MD_LINK.finditer(line) if not m.group(1).startswith("docs/")]
            for page, slug in targets:
                err = check_target(page, slug)
                if err:
                    bad.append(f"{path.relative_to(ROOT)}:{no}: {page.relative_to(ROOT)}#{slug}: {err}")
    assert not bad, "unresolved docs references:\n" + "\n".join(bad)


@pytest.mark.parametrize("text, slug", [("The prefix cut for iid drafts", "the-prefix-cut-for-iid-drafts"),
                                        ("K-SEQ", "k-seq"), ("Min-score layouts", "min-score-layouts"),
                                        ("Why `rho*`? (a note)", "why-rho-a-note")])
def test_slugify(text, slug):
    assert slugify(text) == slug


def test_checker_catches_bad_references(tmp_path):
    assert OUTSIDE.search("see research/multidraft.md 2.2")
    assert OUTSIDE.search("(theory.md 1.4)") and OUTSIDE.search("DESIGN.md exactness contract")
    assert OUTSIDE.search("the note optimal_verifier.md sec. 3")
    assert not OUTSIDE.search("docs/theory/optimal_verifier.md#min-score-layouts")
    assert not OUTSIDE.search("docs/theory/markov.md and docs/theory/sequence_verifiers.md")
    page = ROOT / "docs/theory/membership_ot.md"
    assert check_target(page, "the-prefix-cut-for-iid-drafts") is None
    assert check_target(page, "no-such-heading") is not None
    assert check_target(ROOT / "docs/theory/nope.md", None) is not None
