"""The service's NATS connections: who it connects as, and with which inbox.

Under the trust boundary (docs/security.md) the service is three users with three
permission sets: `service` for JetStream, `responder` for requests (it may publish to
inboxes only, so no reply subject a caller picks reaches JetStream) and `system` for
cutting connections. Without the boundary one connection plays every part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from nats.aio.client import Client

from .callout.keys import BoundaryKeys
from .config import Config
from .identity import Identity
from .wire import connection
from .wire.names import INBOXES

log = logging.getLogger(__name__)


@dataclass
class Links:
    """The service's NATS connections. Under the trust boundary they are three users with
    three permission sets (docs/security.md); without it one connection plays every part."""

    service: Client
    """JetStream, the room bucket, the nonce stream; the in-process shim's requests."""
    responder: Client
    """Receives control requests and callouts; may publish to inboxes only."""
    system: Client | None = None
    """System account: finds and cuts connections. None without the boundary."""
    keys: BoundaryKeys | None = None

    async def close(self, drain_s: float = 5.0) -> None:
        """Drain each connection, but never for longer than `drain_s`: a subscription
        stuck in its callback must not hold shutdown (nats-py waits 30 s per connection)."""
        for nc in {id(c): c for c in (self.responder, self.system, self.service) if c}.values():
            try:
                await asyncio.wait_for(nc.drain(), drain_s)
            except Exception:
                with contextlib.suppress(Exception):
                    await nc.close()


async def open_links(config: Config, url: str, keys: BoundaryKeys | None) -> Links:
    """Connect the service: as its three boundary users when it has keys, else once."""

    async def dial(role: str, identity: Identity | None = None) -> Client:
        opts = connection.options(
            url,
            name=f"{config.service_name}-{role}",
            identity=identity,
            inbox=INBOXES[role] if identity is not None else None,
            creds=config.nats_creds,
            pending_size=64 * 1024 * 1024,
            error_cb=_ErrorLog().log,
            disconnected_cb=_log_disconnect,
            reconnected_cb=_log_reconnect,
        )
        return await connection.connect_until_up(opts)

    if keys is None:
        nc = await dial("service")
        return Links(service=nc, responder=nc)
    opened: list[Client] = []
    try:
        for role in ("service", "responder", "system"):
            opened.append(await dial(role, keys.users[role]))
    except BaseException:
        for nc in opened:
            await nc.close()
        raise
    service, responder, system = opened
    return Links(service, responder, system, keys)


class _ErrorLog:
    """nats-py reports every failed attempt, four a second while NATS is away (at start,
    the service keeps trying until it comes: orchestrators start things in any order).
    The first of a run of equal errors is logged with the URL to check; repeats only
    every `every_s`, counted."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.last: str | None = None
        self.logged_at = 0.0
        self.repeats = 0

    async def log(self, exc: Exception) -> None:
        # A bound coroutine function: nats-py refuses callable objects as callbacks.
        text = str(exc) or type(exc).__name__
        now = time.monotonic()
        if text == self.last and now - self.logged_at < self.every_s:
            self.repeats += 1
            return
        if text == self.last:
            log.warning("nats: %s (%d more times)", text, self.repeats)
        elif isinstance(exc, OSError):  # NATS unreachable: retried until it answers
            log.warning("nats: %s (retrying; check UNIBUS_NATS_URL or --nats-url)", text)
        else:
            log.warning("nats: %s", text)
        self.last, self.logged_at, self.repeats = text, now, 0


async def _log_disconnect() -> None:
    log.warning("nats: disconnected")


async def _log_reconnect() -> None:
    log.info("nats: reconnected")
