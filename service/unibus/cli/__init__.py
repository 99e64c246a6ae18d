"""`unibus`: one entry point; each command group registers itself from its own module."""

from __future__ import annotations

import argparse
import logging
import sys

from . import boundary, health, keys, messages, rooms, serve, shim

# Each module exposes `register(subparsers)`; the parser it adds carries `func(args) -> int`.
COMMAND_MODULES = [serve, health, shim, keys, boundary, rooms, messages]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unibus", description="unibus control plane and peer tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
