"""How many connections each identity holds, across every server, for the per-identity
connection limit (docs/security.md, "Admission model").

Asking the servers (`CONNZ` filtered by user) on every connect makes each connect pay
for a scan of every connection the server holds: +3.8 ms at 200 connections and +10.4 ms
at 2,000 (a fresh identity's connect in `bench/connection_limit.py`), on a callout that
answers one request at a time. So the counts are kept from the servers' own events instead: every server
publishes `$SYS.ACCOUNT.UNIBUS.CONNECT` and `…DISCONNECT` for each connection of the
account, naming the user the callout gave it, which is the identity's key. A connect
then costs a lookup.

- An identity not yet counted (first seen since this instance started, or forgotten) is
  counted once with `CONNZ`, for the connections it opened before; events that arrive
  meanwhile are applied to the same count, and a connection that closes meanwhile is not
  brought back by the `CONNZ` answer.
- Once the events have been followed for a user JWT's lifetime, that is no longer needed:
  nats-server closes a connection whose JWT expires, so every connection open by then
  was admitted while the events were followed. An identity not counted then holds none.
- An admission whose connect event has not arrived yet counts too (for `PENDING_S` at
  most), so a burst decided faster than the events arrive cannot pass the limit.
- The system connection reconnecting may have lost events: everything is forgotten and
  counted afresh.
- At most `REMEMBERED` identities are kept, the longest unused forgotten first; a
  forgotten identity is counted again with `CONNZ` when it next connects (until the
  events have been followed for a JWT's lifetime; from then on only identities with a
  connection are kept).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict, deque
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from .cutoff import ConnectionCutter
from .serverconf import CONNECTION_EVENTS

log = logging.getLogger(__name__)

CONNECT_EVENTS, DISCONNECT_EVENTS = CONNECTION_EVENTS
PENDING_S = 2.0
REMEMBERED = 100_000

Conn = tuple[str, int]
"""A connection: the server's id and its connection id there."""


class EventsRefused(Exception):
    """The system user may not subscribe to the connection events."""


class ConnectionCounts:
    def __init__(self, system: Client, cutter: ConnectionCutter, jwt_ttl_s: float) -> None:
        self._nc = system
        self._cutter = cutter
        self._jwt_ttl_s = jwt_ttl_s
        self._complete_at = 0.0
        """From then on every open connection was admitted while the events were followed."""
        self._held: OrderedDict[str, set[Conn]] = OrderedDict()
        self._closing: dict[str, set[Conn]] = {}
        """Identities being counted with CONNZ, and what closed while it was asked."""
        self._pending: dict[str, deque[float]] = {}
        self._counting: dict[str, asyncio.Task[None]] = {}
        self._reconnects = 0

    async def start(self) -> None:
        """Follow the events; EventsRefused if the system user may not (a boundary.conf
        from before the limit), which would leave counts that never go down."""
        self._reconnects = self._nc.stats["reconnects"]
        self._complete_at = time.monotonic() + self._jwt_ttl_s
        await self._nc.subscribe(CONNECT_EVENTS, cb=self._connected)
        await self._nc.subscribe(DISCONNECT_EVENTS, cb=self._disconnected)
        await self._nc.flush()  # a refused subscription's -ERR comes before the PONG
        error = str(self._nc.last_error or "").lower()  # the server lower-cases the subject
        if CONNECT_EVENTS.lower() in error or DISCONNECT_EVENTS.lower() in error:
            raise EventsRefused(error)

    async def held(self, identity: str) -> int:
        """The identity's connections now, and admissions of it still on their way."""
        self._forget_after_reconnect()
        if identity in self._counting:  # one CONNZ per identity however many ask at once
            await asyncio.shield(self._counting[identity])
        elif identity not in self._held and time.monotonic() >= self._complete_at:
            self._held[identity] = set()
        elif identity not in self._held:
            task = self._counting[identity] = asyncio.create_task(self._count(identity))
            try:
                await asyncio.shield(task)
            finally:
                self._counting.pop(identity, None)
        self._held.move_to_end(identity)
        return len(self._held[identity]) + self._still_pending(identity)

    def _still_pending(self, identity: str) -> int:
        pending = self._pending.get(identity)
        now = time.monotonic()
        while pending and now - pending[0] > PENDING_S:
            pending.popleft()
        if pending is not None and not pending:
            del self._pending[identity]
        return len(pending or ())

    def admitted(self, identity: str) -> None:
        """The callout let a connection of `identity` in; its connect event will follow."""
        self._pending.setdefault(identity, deque()).append(time.monotonic())

    async def _count(self, identity: str) -> None:
        held: set[Conn] = set()
        self._held[identity] = held
        closing = self._closing[identity] = set()
        try:
            found = await self._cutter.connections(identity, grace_s=0.0)
        except BaseException:
            del self._held[identity]
            raise
        finally:
            del self._closing[identity]
        held |= {(c.server_id, c.cid) for c in found} - closing
        while len(self._held) > REMEMBERED:
            forgotten, _ = self._held.popitem(last=False)
            self._pending.pop(forgotten, None)

    def _forget_after_reconnect(self) -> None:
        reconnects = self._nc.stats["reconnects"]
        if reconnects != self._reconnects:
            log.info("system connection reconnected: connection counts start afresh")
            self._reconnects = reconnects
            self._complete_at = time.monotonic() + self._jwt_ttl_s
            self._held.clear()
            self._pending.clear()

    async def _connected(self, msg: Msg) -> None:
        event = _event(msg)
        if event is None:
            return
        identity, conn = event
        held = self._held.get(identity)
        if held is None:
            return
        held.add(conn)
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
            if not held and not self._pending.get(identity) and time.monotonic() >= self._complete_at:
                del self._held[identity]  # not counted holds none from now on
        closing = self._closing.get(identity)
        if closing is not None:
            closing.add(conn)


def _event(msg: Msg) -> tuple[str, Conn] | None:
    try:
        data: dict[str, Any] = json.loads(msg.data)
        client, server = data["client"], data["server"]
        user, cid, server_id = client.get("user"), client.get("id"), server.get("id")
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("unreadable connection event on %s", msg.subject)
        return None
    if not isinstance(user, str) or not isinstance(cid, int) or not isinstance(server_id, str):
        return None
    return user, (server_id, cid)
