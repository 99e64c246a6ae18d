"""Revocation on the data plane: closing the connections whose grant holds a room their
identity has lost, so they reconnect under permissions from the current membership.

NATS cannot change a live connection's permissions; it can close the connection. Every
connection the callout admitted is named after its grant (grants.py), so one pass over
the account's connections (`$SYS.REQ.SERVER.PING.CONNZ`, paged, every server answers)
tells which are stale against the room bucket's copy, and each server closes its own
(`$SYS.REQ.SERVER.<id>.KICK`). Grants cut nobody: a pass only closes connections that
hold a room their identity is no longer in.

Nothing here depends on which instance wrote the change. Every instance runs a pass when
its copy learns of a lost membership (its own writes and everyone else's, through the
bucket's watch), when it starts, and every `sweep_s`; passes are idempotent (a second
pass finds nothing left to close). A connection whose authorization is still in flight
during a pass (no name yet) may carry a grant computed before the change: passes repeat
until no such connection is left or nats-server's authorization window has passed, after
which every grant computed before the change is either named or refused
(docs/security.md, "The race").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from ..storage import RoomStore
from ..wire.gather import gather
from .grants import Grant

log = logging.getLogger(__name__)


_GRACE_S = 0.02
_NO_GRACE_S = 0.001
AUTH_WINDOW_S = 2.5
"""nats-server's default authorization timeout (2 s, the longest it waits for a callout's
answer) and slack: after this, no connection is still being authorized from before."""
_RECHECK_S = 0.1
_PAGE_OVERLAP = 16
"""Pages overlap by this many connections, so connections closing between two page
requests (shifting the rest down) do not push one past the next page unseen."""


@dataclass(frozen=True)
class Connection:
    server_id: str
    cid: int
    user: str
    """CONNZ's `authorized_user`: a grant's name, a static user's key or `anonymous`; while
    the connection is being authorized, the nkey it claims (or nothing yet)."""
    account: str
    """Empty until nats-server has applied the connection's authorization (checked on
    2.15.1: CONNZ lists a connection from its accept, bound to no account until then)."""

    @property
    def authorizing(self) -> bool:
        return not self.account


class Revoker:
    def __init__(
        self,
        system: Client,
        store: RoomStore,
        page_size: int = 256,
        sweep_s: float = 60.0,
        timeout_s: float = 1.0,
        auth_window_s: float = AUTH_WINDOW_S,
    ) -> None:
        self._nc = system
        self._store = store
        self._page = max(page_size, _PAGE_OVERLAP + 1)
        self._sweep_s = sweep_s
        self._timeout = timeout_s
        self._window = auth_window_s
        self._servers = 0
        """How many servers answered the last CONNZ: a gather stops once as many have."""
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.cut_total = 0
        """Connections this instance has closed, for tests and metrics."""

    def start(self) -> None:
        """Sweep now (what an instance that was down may have missed), then on every
        lost membership and every `sweep_s`."""
        self._store.on_membership_loss(self.lost)
        self._wanted.set()
        self._task = asyncio.create_task(self._run(), name="unibus-revoker")

    def lost(self, room_id: str, identities: frozenset[str]) -> None:
        log.debug("room %s lost %d members: revoking", room_id, len(identities))
        self._wanted.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=self._timeout)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # time for the periodic sweep
                await asyncio.wait_for(self._wanted.wait(), self._sweep_s)
            self._wanted.clear()
            try:
                await self.settle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("revocation pass failed; retrying", exc_info=True)
                await asyncio.sleep(self._timeout)
                self._wanted.set()

    async def settle(self) -> int:
        """Passes until one finds no connection still being authorized (or the window
        for such connections has passed); how many connections were closed."""
        deadline = time.monotonic() + self._window
        closed = 0
        while True:
            cut, authorizing = await self.sweep()
            closed += cut
            if not authorizing or time.monotonic() > deadline:
                return closed
            await asyncio.sleep(_RECHECK_S)

    async def sweep(self) -> tuple[int, int]:
        """One pass: close every stale connection; (how many closed, how many were still
        being authorized)."""
        await self._store.catch_up()
        revision = self._store.revision
        connections = await self.connections()
        stale = []
        for conn in connections:
            grant = Grant.parse(conn.user)
            if grant is not None and grant.stale(self._store.cached, revision):
                stale.append(conn)
        log.debug("revocation pass at %d: %d connections, %d stale", revision, len(connections), len(stale))
        results = await asyncio.gather(*(self._kick(c) for c in stale), return_exceptions=True)
        closed = sum(1 for r in results if r is True)
        if stale:
            log.info("revoked %d connections (%d closed here)", len(stale), closed)
        self.cut_total += closed
        return closed, sum(1 for c in connections if c.authorizing)

    async def connections(self) -> list[Connection]:
        """Every open client connection on every server, page by page: of every account,
        because one still being authorized is bound to none yet (a CONNZ account filter
        would hide exactly the connections `settle` must wait for)."""
        found: dict[tuple[str, int], Connection] = {}
        offset = 0
        while True:
            query = {"auth": True, "offset": offset, "limit": self._page}
            # A server that joined since the last count is waited for on the first page.
            body = json.dumps(query).encode()
            answers = await self._gather("$SYS.REQ.SERVER.PING.CONNZ", body, grace=offset == 0)
            more = False
            for answer in answers:
                server_id = (answer.get("server") or {}).get("id")
                page = (answer.get("data") or {}).get("connections") or []
                more = more or len(page) >= self._page
                for conn in page:
                    cid, user = conn.get("cid"), str(conn.get("authorized_user") or "")
                    if server_id and isinstance(cid, int) and conn.get("kind") == "Client":
                        account = str(conn.get("account") or "")
                        found[(server_id, cid)] = Connection(server_id, cid, user, account)
            if not more:
                return list(found.values())
            offset += self._page - _PAGE_OVERLAP

    async def _kick(self, conn: Connection) -> bool:
        body = json.dumps({"cid": conn.cid}).encode()
        try:
            reply = await self._nc.request(f"$SYS.REQ.SERVER.{conn.server_id}.KICK", body, self._timeout)
        except Exception as exc:  # a server that went away took the connection with it
            log.warning("could not cut connection %s on %s: %r", conn.cid, conn.server_id, exc)
            return False
        error = json.loads(reply.data or b"{}").get("error")
        if error:  # already gone: the client closed it, or another instance cut it
            log.debug("cut %s on %s: %s", conn.cid, conn.server_id, error)
            return False
        return True

    async def learn_servers(self) -> int:
        """Ask once how many servers there are, so the first pass does not wait out a timeout."""
        return len(await self._gather("$SYS.REQ.SERVER.PING.CONNZ", b'{"limit": 1}'))

    async def _gather(self, subject: str, body: bytes, grace: bool = True) -> list[dict[str, Any]]:
        """Every server answers a PING request; collect until as many answered as last time
        (and then, with `grace`, a little longer for one that joined since), or until the
        timeout."""
        expect = self._servers or None
        idle = _GRACE_S if grace else _NO_GRACE_S
        gathered = await gather(self._nc, subject, body, within_s=self._timeout, idle_s=idle, expect=expect)
        answers = [json.loads(answer.msg.data) for answer in gathered]
        if answers:
            self._servers = len(answers)
        return answers
