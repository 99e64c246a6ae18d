"""`unibus`: one entry point; each command group registers itself from its own module."""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__, logformat
from . import backup, boundary, health, keys, messages, request, rooms, serve, services, shim, sign
from .output import EXIT_USAGE, CliError, CommandParser, report
from .target import add_global_options

# Each module exposes `register(subparsers)`; the parser it adds carries `func(args) -> int`.
COMMAND_MODULES = [serve, health, shim, keys, boundary, rooms, messages, request, sign, services, backup]


LOG_LEVELS = ("debug", "info", "warning", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="unibus", description="unibus control plane and peer tools")
    parser.set_defaults(json=False)
    parser.add_argument("--version", action="version", version=f"unibus {__version__}")
    commands = parser.add_subparsers(dest="command")
    for module in COMMAND_MODULES:
        module.register(commands)
    for each in _every_parser(parser):  # as natscli's: connection flags anywhere on the line
        add_global_options(each)
    return parser


def _every_parser(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # an alias maps to the same parser
                found += _every_parser(sub)
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    CommandParser.json_errors = "--json" in argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    level = "debug" if getattr(args, "verbose", False) else os.environ.get("UNIBUS_LOG_LEVEL", "info").lower()
    fmt = os.environ.get("UNIBUS_LOG_FORMAT", "text").lower()
    for variable, value, choices in (
        ("UNIBUS_LOG_LEVEL", level, LOG_LEVELS),
        ("UNIBUS_LOG_FORMAT", fmt, logformat.FORMATS),
    ):
        if value not in choices:
            bad = CliError(f"{variable}: {value!r} is not one of {', '.join(choices)}", EXIT_USAGE)
            return report(args.json, bad)
    logformat.configure(level, fmt)
    try:
        code: int = args.func(args)
    except BaseException as exc:  # report() re-raises what is not an expected failure
        return report(args.json, exc)
    return code


if __name__ == "__main__":
    sys.exit(main())
