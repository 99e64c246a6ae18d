"""Cutting an identity's connections when its rooms change, so it reconnects and the
callout issues permissions from the new membership.

NATS cannot change a live connection's permissions; it can close the connection. Clients
reconnect by themselves, and a reconnect is a new authorization. So after a change the
service asks every server (`$SYS.REQ.SERVER.PING.CONNZ`, filtered by the user name the
callout gave the connection, which is the identity's key) which connections the identity
holds, and has each server close them (`$SYS.REQ.SERVER.<id>.KICK`). This needs the
system account, hence its own connection with those two subjects and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from ..wire.gather import gather
from .serverconf import ACCOUNT

log = logging.getLogger(__name__)


_GRACE_S = 0.02


@dataclass(frozen=True)
class Connection:
    server_id: str
    cid: int


class ConnectionCutter:
    """Cuts connections, at most once per identity per `recut_s`: anyone may add anyone to
    a room and remove them again, and each change cuts the other's connections. A change
    inside the window is folded into one cut at its end, so an identity is cut at most
    once a second per instance however fast someone flips its membership, and no change
    waits longer than that for its cut."""

    def __init__(self, system: Client, timeout_s: float = 1.0, recut_s: float = 1.0) -> None:
        self._nc = system
        self._timeout = timeout_s
        self._recut_s = recut_s
        self._servers = 0
        """How many servers answered the last CONNZ: a gather stops once as many have."""
        self._last_cut: dict[str, float] = {}
        self._trailing: dict[str, asyncio.Task[int]] = {}

    async def learn_servers(self) -> int:
        """Ask once how many servers there are, so the first cut does not wait out a timeout."""
        return len(await self._gather("$SYS.REQ.SERVER.PING.CONNZ", b'{"limit": 1}'))

    async def cut(self, identities: Iterable[str]) -> int:
        """Close every connection of these identities on every server, now or (for one cut
        within the last `recut_s`) at the end of that window; how many closed now."""
        now = time.monotonic()
        self._last_cut = {i: t for i, t in self._last_cut.items() if now - t < self._recut_s}
        due = set()
        for identity in set(identities):
            if identity not in self._last_cut:
                due.add(identity)
                self._last_cut[identity] = now
            elif identity not in self._trailing:
                delay = self._last_cut[identity] + self._recut_s - now
                task = asyncio.create_task(self._cut_later(identity, delay))
                self._trailing[identity] = task
        return await self._cut_now(due)

    async def _cut_later(self, identity: str, delay_s: float) -> int:
        await asyncio.sleep(delay_s)
        self._trailing.pop(identity, None)
        self._last_cut[identity] = time.monotonic()
        try:
            return await self._cut_now({identity})
        except Exception:
            log.warning("could not cut connections of %s", identity, exc_info=True)
            return 0

    async def close(self) -> None:
        for task in list(self._trailing.values()):
            task.cancel()
        self._trailing.clear()

    async def _cut_now(self, identities: set[str]) -> int:
        if not identities:
            return 0
        found = await asyncio.gather(*(self.connections(i) for i in identities))
        kicks = [self._kick(c) for conns in found for c in conns]
        results = await asyncio.gather(*kicks, return_exceptions=True)
        return sum(1 for r in results if r is True)

    async def connections(self, identity: str, grace_s: float = _GRACE_S) -> list[Connection]:
        """The identity's connections on every server; `grace_s` 0 skips waiting for a server
        that joined since the last gather (the connection limit, which every connect pays)."""
        query = {"user": identity, "acc": ACCOUNT, "limit": 10000}
        answers = await self._gather("$SYS.REQ.SERVER.PING.CONNZ", json.dumps(query).encode(), grace_s)
        found = []
        for answer in answers:
            server_id = (answer.get("server") or {}).get("id")
            for conn in (answer.get("data") or {}).get("connections") or []:
                if server_id and isinstance(conn.get("cid"), int):
                    found.append(Connection(server_id, conn["cid"]))
        return found

    async def _kick(self, conn: Connection) -> bool:
        body = json.dumps({"cid": conn.cid}).encode()
        try:
            reply = await self._nc.request(f"$SYS.REQ.SERVER.{conn.server_id}.KICK", body, self._timeout)
        except Exception as exc:  # a server that went away took the connection with it
            log.warning("could not cut connection %s on %s: %r", conn.cid, conn.server_id, exc)
            return False
        error = json.loads(reply.data or b"{}").get("error")
        if error:  # already gone: the client closed it meanwhile
            log.debug("cut %s on %s: %s", conn.cid, conn.server_id, error)
            return False
        return True

    async def _gather(self, subject: str, body: bytes, grace_s: float = _GRACE_S) -> list[dict[str, Any]]:
        """Every server answers a PING request; collect until as many answered as last time
        and then a short grace for one that joined since, or until the timeout."""
        expect = self._servers or None
        gathered = await gather(
            self._nc, subject, body, within_s=self._timeout, idle_s=grace_s, expect=expect
        )
        answers = [json.loads(answer.msg.data) for answer in gathered]
        if answers:
            self._servers = len(answers)
        return answers
