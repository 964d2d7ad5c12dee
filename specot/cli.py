"""The ``specot`` command line: ``specot {solve,compare,simulate,verify,reproduce} ...``.

Each subcommand lives in :mod:`specot.commands` as a module with ``add_parser(subparsers)`` and
``run(args) -> int``.

Exit codes and error lines:

* ``2``: bad input. Argument errors, ``ValueError`` (the project's bad-input error, naming the
  argument), ``OSError`` (a missing file, a directory where a file was expected, an unwritable
  ``--out``) and ``MemoryError`` print exactly one line ``specot COMMAND: error: ...`` on stderr.
* ``1``: an unexpected exception (a bug): one line naming the exception and ``--debug`` (which
  re-raises it with the full traceback).
* ``130``: interrupted. Long commands write each finished step as they go, so ``--resume`` picks up
  where the interrupted run stopped.

Negative numbers after an option are accepted (``--p -0.1,0.6,0.5`` works like ``--p=-0.1,...``).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import import_module

from . import __version__

#: subcommands, each a module under specot.commands
COMMANDS = ("solve", "compare", "simulate", "verify", "reproduce", "sequence")

#: a value that looks like a (list of) negative number(s): -0.1 or -0.1,0.6,0.5 or -1e-3
_NEGATIVE = re.compile(r"^-(\d|\.\d)[\d.eE+\-,\s]*$")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: error: message``) and exit 2."""

    def error(self, message: str):  # noqa: D102 (argparse API)
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def _one_line(message) -> str:
    text = " ".join(str(message).split())
    return text or "(no message)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="specot",
        description="Exact optimal transport, simulation and verification for speculative decoding.",
    )
    parser.add_argument("--version", action="version", version=f"specot {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        import_module(f"specot.commands.{name}").add_parser(sub)
    return parser


def _join_negative_values(argv: list[str]) -> list[str]:
    """``["--p", "-0.1,0.6"]`` -> ``["--p=-0.1,0.6"]`` so that argparse does not read the value as an
    option (it only recognises single negative numbers, not comma lists)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if (a.startswith("-") and a != "--" and "=" not in a and not _NEGATIVE.match(a)
                and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1])):
            out.append(f"{a}={argv[i + 1]}" if a.startswith("--") else a + argv[i + 1])
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(_join_negative_values(argv))
    except SystemExit as exc:  # --help / --version (0) or a one-line argument error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    name = f"specot {args.command}"
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError, MemoryError) as exc:
        if args.debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
            msg = f"{exc.strerror}: {exc.filename}"
        if isinstance(exc, MemoryError):
            msg = f"out of memory ({exc or 'the case is too large'})"
        print(f"{name}: error: {_one_line(msg)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: report it in one line, the traceback on request
        if args.debug:
            raise
        print(f"{name}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              f"(run 'specot --debug {args.command} ...' for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
