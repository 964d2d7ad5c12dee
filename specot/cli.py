"""The ``specot`` command line: ``specot {solve,compare,simulate,verify,reproduce} ...``.

Each subcommand lives in :mod:`specot.commands` as a module with ``add_parser(subparsers)`` and
``run(args) -> int``. Bad input (``ValueError``, a missing file) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from . import __version__

#: subcommands, each a module under specot.commands
COMMANDS = ("solve", "compare", "simulate", "verify", "reproduce", "sequence")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specot",
        description="Exact optimal transport, simulation and verification for speculative decoding.",
    )
    parser.add_argument("--version", action="version", version=f"specot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        import_module(f"specot.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"specot {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"specot {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
