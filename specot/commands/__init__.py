"""One module per ``specot`` subcommand, each with ``add_parser(subparsers)`` and ``run(args)``."""
