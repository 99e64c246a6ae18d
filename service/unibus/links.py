"""The service's NATS connections: who it connects as, and with which inbox.

Under the trust boundary (docs/security.md) the service is four users with four
permission sets: `service` for JetStream, `responder` for requests (it may publish to
inboxes only, so no reply subject a caller picks reaches JetStream), `callout` for the
auth callout (it may publish callout answers only, and receives nothing a caller can
address) and `system` for cutting connections. Without the boundary one connection plays
every part, and there is no callout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass

from nats.aio.client import Client

from .callout.keys import SERVICE_ROLES, BoundaryKeys
from .config import Config
from .identity import Identity
from .logthrottle import Throttle
from .wire import connection
from .wire.names import INBOXES

log = logging.getLogger(__name__)


@dataclass
class Links:
    """The service's NATS connections. Under the trust boundary they are four users with
    four permission sets (docs/security.md); without it one connection plays every part."""

    service: Client
    """JetStream, the room bucket, the nonce stream; the in-process shim's requests."""
    responder: Client
    """Receives control requests; may publish to inboxes only."""
    callout: Client | None = None
    """Receives the auth callout; may publish its answers only. None without the boundary."""
    system: Client | None = None
    """System account: finds and cuts connections. None without the boundary."""
    keys: BoundaryKeys | None = None

    async def close(self, drain_s: float = 5.0) -> None:
        """Drain each connection, but never for longer than `drain_s`: a subscription
        stuck in its callback must not hold shutdown (nats-py waits 30 s per connection)."""
        for nc in {id(c): c for c in (self.callout, self.responder, self.system, self.service) if c}.values():
            try:
                await asyncio.wait_for(nc.drain(), drain_s)
            except Exception:
                with contextlib.suppress(Exception):
                    await nc.close()


async def open_links(config: Config, url: str, keys: BoundaryKeys | None) -> Links:
    """Connect the service: as its four boundary users when it has keys, else once."""

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
        for role in SERVICE_ROLES:
            opened.append(await dial(role, keys.users[role]))
    except BaseException:
        for nc in opened:
            await nc.close()
        raise
    service, responder, callout, system = opened
    return Links(service, responder, callout, system, keys)


class _ErrorLog:
    """nats-py reports every failed attempt, four a second while NATS is away (at start,
    the service keeps trying until it comes: orchestrators start things in any order), and
    every permissions violation the server reports, one for each request whose reply
    subject a caller aimed where this user may not publish. Each kind of error (its text
    without the quoted subject) is logged once per `every_s`, counted (logthrottle.py);
    an unreachable NATS with the URL to check."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.throttle = Throttle(log, every_s)

    async def log(self, exc: Exception) -> None:
        # A bound coroutine function: nats-py refuses callable objects as callbacks.
        text = str(exc) or type(exc).__name__
        hint = " (retrying; check UNIBUS_NATS_URL or --nats-url)" if isinstance(exc, OSError) else ""
        self.throttle.log(logging.WARNING, _QUOTED.sub('"…"', text), "nats: %s%s", text, hint)


_QUOTED = re.compile(r'"[^"]*"')


async def _log_disconnect() -> None:
    log.warning("nats: disconnected")


async def _log_reconnect() -> None:
    log.info("nats: reconnected")
