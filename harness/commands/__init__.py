"""CLI subcommands. Each module here defines `register(subparsers)`; the CLI finds them all,
so adding a command never means editing a central list."""
