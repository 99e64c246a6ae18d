"""`unibus request SUBJECT [BODY]`: one signed request to a control subject, reply as is.

What `nats req` does for the README's raw examples, but signed with the identity (the
default `enforce` mode refuses unsigned requests) and over a connection made with its
nkey, so it works under the trust boundary. A service error is one line and exit 1, as
for every command; `--json` prints the reply's headers and body instead of the body alone.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from ..client import Peer
from .output import EXIT_USAGE, CliError
from .session import add_peer_options, run_peer


def register(commands: Any) -> None:
    request = commands.add_parser(
        "request", help="send one signed request to a control subject and print the reply"
    )
    add_peer_options(request)
    request.add_argument("subject", help="e.g. '$UNIBUS.CTL.rooms.lobby.history' (quote the $)")
    request.add_argument("body", nargs="?", default="", help="request body; `-` reads it from stdin")
    request.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra header, repeatable (e.g. 'Accept: application/msgpack')",
    )
    request.set_defaults(func=lambda args: run_peer(args, lambda peer: _request(peer, args)))


async def _request(peer: Peer, args: argparse.Namespace) -> int:
    rooms = f"{args.prefix}.rooms."
    if not args.subject.startswith(rooms):
        raise CliError(
            f"{args.subject!r} is not a control subject ({rooms}…); `unibus service` asks $SRV", EXIT_USAGE
        )
    body = sys.stdin.buffer.read() if args.body == "-" else args.body.encode()
    data, headers = await peer.control.request_raw(args.subject[len(rooms) :], body, _headers(args.header))
    if args.json:
        print(json.dumps({"subject": args.subject, "headers": headers, **_body(data)}), flush=True)
    else:
        sys.stdout.buffer.write(data + (b"" if data.endswith(b"\n") else b"\n"))
        sys.stdout.flush()
    return 0


def _headers(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise CliError(f"header {pair!r} is not NAME:VALUE", EXIT_USAGE)
        headers[name.strip()] = value.strip()
    return headers


def _body(data: bytes) -> dict[str, Any]:
    """A JSON reply nested as JSON; anything else (msgpack) as base64."""
    try:
        return {"body": json.loads(data)}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"body_base64": base64.b64encode(data).decode()}
