"""How many connections each identity holds, across every server, for the per-identity
connection limit (docs/security.md, "Admission model").

Asking the servers (`CONNZ`) on every connect would make each connect pay for a scan of
every connection the servers hold, on a callout answered for every connect. So the counts
are kept from the servers' own events instead: every server publishes
`$SYS.ACCOUNT.UNIBUS.CONNECT` and `…DISCONNECT` for each connection of the account,
naming the user the callout gave it, which is its grant and starts with the identity's
key (grants.py). A connect then costs a lookup.

- At start, one pass over the account's connections (the revoker's paged `CONNZ`)
  counts what was open before; events that arrive meanwhile are applied too, and a
  connection that closes meanwhile is not brought back by the pass.
- An admission whose connect event has not arrived yet counts too (for `PENDING_S` at
  most), so a burst decided faster than the events arrive cannot pass the limit.
- The system connection reconnecting may have lost events: the counts are made afresh
  by another pass, which the next decisions wait for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from ..wire.interest import confirm_interest
from .grants import Grant
from .revoker import Revoker
from .serverconf import CONNECTION_EVENTS

log = logging.getLogger(__name__)

CONNECT_EVENTS, DISCONNECT_EVENTS = CONNECTION_EVENTS
PENDING_S = 2.0

Conn = tuple[str, int]
"""A connection: the server's id and its connection id there."""


class EventsRefused(Exception):
    """The system user may not subscribe to the connection events."""


class ConnectionCounts:
    def __init__(self, system: Client, revoker: Revoker) -> None:
        self._nc = system
        self._revoker = revoker
        self._held: dict[str, set[Conn]] = {}
        self._pending: dict[str, deque[float]] = {}
        self._closed_while_counting: set[Conn] | None = None
        self._counted: asyncio.Task[None] | None = None
        self._reconnects = 0

    async def start(self) -> None:
        """Follow the events, then count what is open; EventsRefused if the system user
        may not follow them (a boundary.conf from before the limit), which would leave
        counts that never go down."""
        self._reconnects = self._nc.stats["reconnects"]
        await self._nc.subscribe(CONNECT_EVENTS, cb=self._connected)
        await self._nc.subscribe(DISCONNECT_EVENTS, cb=self._disconnected)
        await confirm_interest(self._nc)  # a refused subscription's -ERR comes before the PONG
        error = str(self._nc.last_error or "").lower()  # the server lower-cases the subject
        if CONNECT_EVENTS.lower() in error or DISCONNECT_EVENTS.lower() in error:
            raise EventsRefused(error)
        self._counted = asyncio.create_task(self._count())
        await asyncio.shield(self._counted)

    async def held(self, identity: str) -> int:
        """The identity's connections now, and admissions of it still on their way."""
        reconnects = self._nc.stats["reconnects"]
        if reconnects != self._reconnects:
            log.info("system connection reconnected: connections are counted afresh")
            self._reconnects = reconnects
            self._counted = asyncio.create_task(self._count())
        if self._counted is not None and not self._counted.done():
            await asyncio.shield(self._counted)
        return len(self._held.get(identity, ())) + self._still_pending(identity)

    def admitted(self, identity: str) -> None:
        """The callout let a connection of `identity` in; its connect event will follow."""
        self._pending.setdefault(identity, deque()).append(time.monotonic())

    async def _count(self) -> None:
        self._held.clear()
        self._pending.clear()
        closed = self._closed_while_counting = set()
        try:
            connections = await self._revoker.connections()
        finally:
            self._closed_while_counting = None
        for conn in connections:
            grant = Grant.parse(conn.user)
            key = (conn.server_id, conn.cid)
            if grant is not None and key not in closed:
                self._held.setdefault(grant.identity, set()).add(key)

    def _still_pending(self, identity: str) -> int:
        pending = self._pending.get(identity)
        now = time.monotonic()
        while pending and now - pending[0] > PENDING_S:
            pending.popleft()
        if pending is not None and not pending:
            del self._pending[identity]
        return len(pending or ())

    async def _connected(self, msg: Msg) -> None:
        event = _event(msg)
        if event is None:
            return
        identity, conn = event
        self._held.setdefault(identity, set()).add(conn)
        pending = self._pending.get(identity)
        if pending:
            pending.popleft()  # whichever instance admitted it: at worst one stops counting early
            if not pending:
                del self._pending[identity]

    async def _disconnected(self, msg: Msg) -> None:
        event = _event(msg)
        if event is None:
            return
        identity, conn = event
        held = self._held.get(identity)
        if held is not None:
            held.discard(conn)
            if not held:
                del self._held[identity]
        if self._closed_while_counting is not None:
            self._closed_while_counting.add(conn)


def _event(msg: Msg) -> tuple[str, Conn] | None:
    """The identity and connection an event is about; None for a connection the callout
    did not admit under a grant (static users, anonymous ones)."""
    try:
        data: dict[str, Any] = json.loads(msg.data)
        client, server = data["client"], data["server"]
        user, cid, server_id = client.get("user"), client.get("id"), server.get("id")
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("unreadable connection event on %s", msg.subject)
        return None
    if not isinstance(user, str) or not isinstance(cid, int) or not isinstance(server_id, str):
        return None
    grant = Grant.parse(user)
    return (grant.identity, (server_id, cid)) if grant is not None else None
