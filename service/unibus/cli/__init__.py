"""`unibus`: one entry point; each command group registers itself from its own module."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import __version__
from . import boundary, health, keys, messages, rooms, serve, shim

# Each module exposes `register(subparsers)`; the parser it adds carries `func(args) -> int`.
COMMAND_MODULES = [serve, health, shim, keys, boundary, rooms, messages]


LOG_LEVELS = ("debug", "info", "warning", "error")
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unibus", description="unibus control plane and peer tools")
    parser.add_argument("--version", action="version", version=f"unibus {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (UNIBUS_LOG_LEVEL=debug)")
    commands = parser.add_subparsers(dest="command")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    level = "debug" if args.verbose else os.environ.get("UNIBUS_LOG_LEVEL", "info").lower()
    if level not in LOG_LEVELS:
        print(f"unibus: UNIBUS_LOG_LEVEL: {level!r} is not one of {', '.join(LOG_LEVELS)}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
