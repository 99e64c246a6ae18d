"""`unibus service ls|ping|info|stats`: the NATS services discovery (`$SRV`), as `nats micro`.

The Go `nats` CLI is what operators usually point at `$SRV`; it is not packaged for every
platform, so the same questions are answered with what this project installs. A `$SRV`
request goes to every instance (no queue group), so replies are gathered until none has
come for `--idle` seconds. Any identity may ask under the trust boundary: discovery is
open to every peer (docs/security.md).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

import nats.errors
from nats.aio.client import Client

from ..wire.gather import gather
from ..wire.names import SERVICE_NAME
from .output import CliError, emit
from .session import add_peer_options, connected
from .target import Target

DEFAULT_SERVICE = SERVICE_NAME


def register(commands: Any) -> None:
    service = commands.add_parser("service", help="NATS services discovery ($SRV), like `nats micro`")
    verbs = service.add_subparsers(dest="verb", required=True)
    for verbs_names, help_text, show in (
        (("ls", "list"), "every service and instance answering $SRV.PING (or one service's)", _show_list),
        (("ping",), "each instance of a service, with its round trip", _show_ping),
        (("info",), "each instance's endpoints, subjects and queue groups", _show_info),
        (("stats",), "each instance's requests, errors and processing time per endpoint", _show_stats),
    ):
        verb, *aliases = verbs_names
        parser: argparse.ArgumentParser = verbs.add_parser(verb, aliases=aliases, help=help_text)
        add_peer_options(parser)
        # As `nats micro`: `ls [NAME]`, `info NAME [ID]`; unibus defaults NAME to its own.
        default = None if verb == "ls" else os.environ.get("UNIBUS_SERVICE_NAME") or DEFAULT_SERVICE
        parser.add_argument(
            "name", nargs="?", default=default, help="service name (UNIBUS_SERVICE_NAME; default %(default)s)"
        )
        if verb != "ls":
            parser.add_argument("id", nargs="?", help="one instance's id (as `service ls` shows it)")
        parser.add_argument(
            "--idle", type=float, default=0.3, help="seconds without a reply that end the gathering"
        )
        parser.set_defaults(func=lambda args, verb=verb, show=show: _run(args, verb, show))


def _run(args: argparse.Namespace, verb: str, show: Any) -> int:
    kind = "PING" if verb in ("ls", "ping") else verb.upper()
    subject = ".".join(part for part in ("$SRV", kind, args.name, getattr(args, "id", None)) if part)

    async def ask(nc: Client, where: Target) -> int:
        found = await replies(nc, subject, where.timeout_s, args.idle)
        if not found:
            raise CliError(await _why_nobody(nc, subject, where))
        emit(args, {"subject": subject, "replies": found}, show(found))
        return 0

    # Discovery needs no particular identity: without one, a throwaway key connects.
    return connected(args, ask, throwaway=True)


async def replies(nc: Client, subject: str, within_s: float, idle_s: float) -> list[dict[str, Any]]:
    """Every reply to one request, each tagged with its round trip: the first awaited for
    up to `within_s`, the rest until `idle_s` passes without one."""
    answers = await gather(nc, subject, within_s=within_s, idle_s=idle_s, expect=1)
    return [{**json.loads(a.msg.data), "rtt_ms": round(a.after_s * 1000, 2)} for a in answers]


async def _why_nobody(nc: Client, subject: str, where: Target) -> str:
    """Nothing answered: NATS's own words for why, "no responders" (nothing subscribes
    to the subject: a wrong name or prefix, or no instance at all) or a timeout."""
    url = where.url_or_default().value
    try:
        # The status comes back at once when nothing subscribes; no need to wait long.
        await nc.request(subject, b"", timeout=min(where.timeout_s, 1.0))
    except nats.errors.NoRespondersError:
        return f"no responders available for request: nothing subscribes to {subject} on {url}"
    except nats.errors.TimeoutError:
        pass
    return f"nothing answered {subject} on {url} within {where.timeout_s:g}s"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def _show_list(replies: list[dict[str, Any]]) -> str:
    rows = [("NAME", "VERSION", "ID")]
    rows += sorted((r["name"], r["version"], r["id"]) for r in replies)
    return _table(rows)


def _show_ping(replies: list[dict[str, Any]]) -> str:
    rows = [("ID", "VERSION", "RTT")]
    rows += [(r["id"], r["version"], f"{r['rtt_ms']} ms") for r in replies]
    return _table(rows)


def _show_info(replies: list[dict[str, Any]]) -> str:
    blocks = []
    for r in replies:
        head = f"{r['name']} {r['version']}  id {r['id']}"
        if r.get("description"):
            head += f"\n  {r['description']}"
        rows = [("ENDPOINT", "SUBJECT", "QUEUE GROUP")]
        rows += [(e["name"], e["subject"], e.get("queue_group") or "") for e in r.get("endpoints") or []]
        blocks.append(head + "\n" + _indent(_table(rows)))
    return "\n\n".join(blocks)


def _show_stats(replies: list[dict[str, Any]]) -> str:
    blocks = []
    for r in replies:
        rows = [("ENDPOINT", "REQUESTS", "ERRORS", "AVG TIME", "LAST ERROR")]
        for e in r.get("endpoints") or []:
            average_ms = f"{e.get('average_processing_time', 0) / 1e6:.2f} ms"
            requests, errors = str(e.get("num_requests", 0)), str(e.get("num_errors", 0))
            rows.append((e["name"], requests, errors, average_ms, e.get("last_error") or ""))
        blocks.append(
            f"{r['name']} {r['version']}  id {r['id']}  since {r.get('started', '?')}\n"
            + _indent(_table(rows))
        )
    return "\n\n".join(blocks)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
