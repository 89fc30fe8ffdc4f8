"""CLI sub-commands. Each module has `add_parser(subparsers)`; cli.py lists them in order."""
