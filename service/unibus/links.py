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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client

from .callout.keys import SERVICE_ROLES, BoundaryKeys
from .config import Config
from .identity import Identity
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
    events: _ConnectionLog | None = None

    async def close(self, drain_s: float = 5.0) -> None:
        """Drain each connection, but never for longer than `drain_s`: a subscription
        stuck in its callback must not hold shutdown (nats-py waits 30 s per connection)."""
        if self.events is not None:
            self.events.closing = True
        for nc in {id(c): c for c in (self.callout, self.responder, self.system, self.service) if c}.values():
            try:
                await asyncio.wait_for(nc.drain(), drain_s)
            except Exception:
                with contextlib.suppress(Exception):
                    await nc.close()


RECONNECT_WAIT_S = 0.05
"""Between reconnect attempts while NATS is away. Clients reconnect on their own every
100-250 ms after a NATS restart, and one whose connect reaches the server before an
instance's callout connection is back waits out nats-server's authorization timeout (2 s)
before it tries again: the instances must be back first (bench/storm.py)."""


async def open_links(config: Config, url: str, keys: BoundaryKeys | None) -> Links:
    """Connect the service: as its four boundary users when it has keys, else once."""
    events = _ConnectionLog()

    async def dial(role: str, identity: Identity | None = None) -> Client:
        opts = connection.options(
            url,
            name=f"{config.service_name}-{role}",
            identity=identity,
            inbox=INBOXES[role] if identity is not None else None,
            creds=config.nats_creds,
            pending_size=64 * 1024 * 1024,
            reconnect_time_wait=RECONNECT_WAIT_S,
            error_cb=events.errors.log,
            disconnected_cb=events.disconnected(role),
            reconnected_cb=events.reconnected(role),
        )
        return await connection.connect_until_up(opts)

    if keys is None:
        nc = await dial("service")
        return Links(service=nc, responder=nc, events=events)
    opened: list[Client] = []
    try:
        for role in SERVICE_ROLES:
            opened.append(await dial(role, keys.users[role]))
    except BaseException:
        for nc in opened:
            await nc.close()
        raise
    service, responder, callout, system = opened
    return Links(service, responder, callout, system, keys, events)


class _ConnectionLog:
    """What the service's connections report: errors with the setting to check, and each
    connection's disconnect and reconnect, named (an outage shows as one line per
    connection, each saying which), never the disconnects of its own stop."""

    def __init__(self) -> None:
        self.errors = connection.ErrorLog(
            "control plane",
            url_setting="UNIBUS_NATS_URL or --nats-url",
            auth_setting="UNIBUS_KEYS_DIR (the seeds whose public keys the server's boundary.env holds) "
            "or UNIBUS_NATS_CREDS",
        )
        self.closing = False

    def disconnected(self, role: str) -> Callable[[], Awaitable[None]]:
        async def said() -> None:
            if not self.closing:
                log.warning("nats: %s connection disconnected", role)

        return said

    def reconnected(self, role: str) -> Callable[[], Awaitable[None]]:
        async def said() -> None:
            log.info("nats: %s connection reconnected", role)

        return said
