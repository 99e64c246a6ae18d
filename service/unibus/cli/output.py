"""How every `unibus` command talks back: results on stdout, failures as one line on stderr.

`--json` is accepted before or after the command (`unibus --json room list` and
`unibus room list --json` are the same) and switches both: a result becomes one JSON
document on stdout, a failure one JSON object on stderr, `{"error": …}` plus the service's
`status` when the service refused. Stdout carries results only, so a pipe into `jq` never
parses an error as data; the exit status says which happened (0 done, 1 failed, 2 usage).

Commands raise; `report` is the one place that turns what they raise into that line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn

import nats.errors

from ..client import SealedKeyError, ServiceError
from ..identity import InvalidKey

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, what a program killed by the signal would exit with."""


class CliError(Exception):
    """A failure worth one line to the user; `code` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class CommandParser(argparse.ArgumentParser):
    """Every (sub)command parser: each takes `--json`, and usage errors honour it.

    A subcommand's `--json` defaults to *suppressed*, so leaving it out there keeps what
    the top level parsed (argparse copies a subparser's defaults over the parent's)."""

    json_errors = False
    """Set by `main` from the raw arguments, so even an unparsable line fails as JSON."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="results as JSON on stdout, failures as JSON on stderr",
        )

    def error(self, message: str) -> NoReturn:
        if not CommandParser.json_errors:
            super().error(message)
        print(json.dumps({"error": f"{self.prog}: {message}"}), file=sys.stderr)
        sys.exit(EXIT_USAGE)


def emit(args: argparse.Namespace, payload: Any, human: str) -> None:
    """`--json` prints the payload as one JSON document; otherwise the human line(s)."""
    print(json.dumps(payload) if args.json else human, flush=True)


def report(json_output: bool, exc: BaseException) -> int:
    """The exit status for what a command raised, after telling the user in one line.
    Anything not listed is a bug and keeps its traceback."""
    status: int | None = None
    if isinstance(exc, CliError):
        message, code = str(exc), exc.code
    elif isinstance(exc, ServiceError):
        message, code, status = exc.message, EXIT_FAILED, exc.code
    elif isinstance(exc, SealedKeyError):
        message, code = str(exc), EXIT_FAILED
    elif isinstance(exc, InvalidKey):
        message, code = str(exc), EXIT_USAGE
    elif isinstance(exc, nats.errors.TimeoutError):
        message, code = "timed out waiting for the control plane", EXIT_FAILED
    elif isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    elif isinstance(exc, BrokenPipeError):
        # The reader went away (`unibus service ls | head -1`): nothing to tell anyone.
        # stdout now points nowhere, so the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    else:
        raise exc
    if json_output:
        error: dict[str, Any] = {"error": message}
        if status is not None:
            error["status"] = status
        print(json.dumps(error), file=sys.stderr)
    else:
        print(f"unibus: {status} {message}" if status is not None else f"unibus: {message}", file=sys.stderr)
    return code
