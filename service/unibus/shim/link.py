"""The shim's NATS connection: its own (retried until NATS is there) or the service's.

Every relayed request goes through `request`, which refuses at once while NATS is away
or too many requests are in flight, so neither an outage nor a flood of clients can pile
up waiting work inside the shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from nats.aio.client import Client
from nats.aio.msg import Msg

from ..identity import Identity
from ..wire import connection
from ..wire.names import INBOXES

log = logging.getLogger(__name__)


class CannotRelay(Exception):
    """The shim cannot relay right now (NATS away, or at its in-flight bound)."""


class NatsLink:
    def __init__(self, max_in_flight: int) -> None:
        self._slots = asyncio.Semaphore(max_in_flight)
        self._nc: Client | None = None
        self._connecting: asyncio.Task[Client] | None = None
        self._owned = False
        self.errors = connection.ErrorLog(
            "shim",
            url_setting="UNIBUS_NATS_URL or --nats-url",
            auth_setting="UNIBUS_NKEY or --nkey (the shim's seed, shim.nk from `unibus boundary init`)",
        )

    @classmethod
    def shared(cls, nc: Client, max_in_flight: int) -> NatsLink:
        """Borrow a connection someone else drains (the service's, under `serve --http`)."""
        link = cls(max_in_flight)
        link._nc = nc
        return link

    @classmethod
    def dial(
        cls, url: str, creds: str | None, max_in_flight: int, identity: Identity | None = None
    ) -> NatsLink:
        """Connect in the background: the HTTP side serves (503) until NATS first answers,
        and nats-py reconnects for ever after that. `identity` is the shim's boundary user
        (docs/security.md), which may send history requests and nothing else."""
        link = cls(max_in_flight)
        link._owned = True
        options = connection.options(
            url,
            name="unibus-shim",
            identity=identity,
            inbox=INBOXES["shim"] if identity is not None else None,
            creds=creds,
            reconnect_time_wait=0.5,
            connect_timeout=2,
            error_cb=link.errors.log,
        )
        link._connecting = asyncio.create_task(connection.connect_until_up(options))
        link._connecting.add_done_callback(link._on_connected)
        return link

    def _on_connected(self, task: asyncio.Task[Client]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._nc = task.result()
            self.errors.last = None
            log.info("shim: connected to NATS")

    @property
    def reason(self) -> str | None:
        """Why NATS is not connected, as last reported (what `/healthz` shows)."""
        return None if self.connected else self.errors.last

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def request(self, subject: str, payload: bytes, headers: dict[str, str], wait_s: float) -> Msg:
        """One NATS request; nats-py's NoRespondersError and TimeoutError pass through."""
        if self._nc is None or not self._nc.is_connected:
            raise CannotRelay("NATS is not connected")
        if self._slots.locked():
            raise CannotRelay("too many requests in flight")
        async with self._slots:
            return await self._nc.request(subject, payload, timeout=wait_s, headers=headers or None)

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._owned and self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()


LINK = web.AppKey("link", NatsLink)
