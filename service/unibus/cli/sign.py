"""`unibus sign ROOM [QUERY]`: a history request through the HTTP shim, signed for curl.

In `enforce` mode (the default) the shim relays only signed requests, and the signature
covers the NATS subject and the exact query string (docs/protocol.md), which no shell
tool computes. This prints the ready `curl` command, or with `--headers` the four
`Unibus-*` headers for any other HTTP client. Each signature is good once (its nonce),
within the service's clock skew of now: sign again for the next request.
"""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

from ..wire.ids import is_room_id
from ..wire.names import CONTROL_PREFIX
from ..wire.signing import sign_request
from .output import EXIT_USAGE, CliError, emit
from .session import add_identity_option, load_identity

DEFAULT_SHIM = "http://127.0.0.1:8000"


def register(commands: Any) -> None:
    sign = commands.add_parser(
        "sign", help="print a signed curl command (or the headers) for a room's history through the shim"
    )
    add_identity_option(sign)
    sign.add_argument("room")
    sign.add_argument("query", nargs="?", default="limit=100", help="query string (default %(default)s)")
    sign.add_argument(
        "--shim",
        default=os.environ.get("UNIBUS_SHIM_URL") or DEFAULT_SHIM,
        help="the shim's base URL (UNIBUS_SHIM_URL; default %(default)s)",
    )
    sign.add_argument(
        "--prefix",
        default=os.environ.get("UNIBUS_API_PREFIX") or CONTROL_PREFIX,
        help="control subject prefix (UNIBUS_API_PREFIX)",
    )
    sign.add_argument(
        "--headers", action="store_true", help="only the four headers, one `Name: value` a line"
    )
    sign.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not is_room_id(args.room):
        raise CliError(f"{args.room!r} is not a room id (1-64 characters of [A-Za-z0-9_-])", EXIT_USAGE)
    query = args.query.removeprefix("?")
    subject = f"{args.prefix}.rooms.{args.room}.history"
    headers = sign_request(load_identity(args), subject, query.encode())
    url = f"{args.shim.rstrip('/')}/rooms/{args.room}/history" + (f"?{query}" if query else "")
    if args.headers:
        human = "\n".join(f"{name}: {value}" for name, value in headers.items())
    else:
        human = shlex.join(["curl", "-s", *(f for n, v in headers.items() for f in ("-H", f"{n}: {v}")), url])
    emit(args, {"url": url, "headers": headers}, human)
    return 0
