"""The aiohttp application and its server, with the limits that keep abusive clients cheap.

aiohttp bounds the request line and header sizes (431/400 past them) and closes a
connection that sends no complete request within `idle_timeout_s`, so slow-header
clients are dropped; the link bounds the NATS work in flight. Nothing here keeps state
between requests, so any number of shims can stand behind a load balancer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from nats.aio.client import Client

from ..identity import Identity
from .cors import cors
from .health import healthz
from .link import LINK, NatsLink
from .relay import history
from .settings import SETTINGS, ShimSettings

log = logging.getLogger(__name__)


def build_app(settings: ShimSettings, link: NatsLink) -> web.Application:
    app = web.Application(middlewares=[cors])
    app[SETTINGS] = settings
    app[LINK] = link
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/rooms/{id}/history", history)
    return app


@dataclass(frozen=True)
class Shim:
    url: str
    """`http://host:port` as bound (the real port when 0 was asked for)."""
    link: NatsLink


@contextlib.asynccontextmanager
async def serving(
    settings: ShimSettings,
    *,
    nc: Client | None = None,
    nats_url: str | None = None,
    creds: str | None = None,
    identity: Identity | None = None,
) -> AsyncIterator[Shim]:
    """Serve until the block exits: on the given connection, or dialling `nats_url`
    (as `identity`, the shim's boundary user, when there is one)."""
    if nc is not None:
        link = NatsLink.shared(nc, settings.max_in_flight)
    elif nats_url is not None:
        link = NatsLink.dial(nats_url, creds, settings.max_in_flight, identity)
    else:
        raise ValueError("the shim needs a NATS connection or URL")
    runner = web.AppRunner(
        build_app(settings, link),
        access_log=None,
        keepalive_timeout=settings.idle_timeout_s,
        max_line_size=settings.max_line_size,
        max_field_size=settings.max_field_size,
        max_headers=settings.max_headers,
        shutdown_timeout=2.0,
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        origins = ", ".join(sorted(settings.allow_origins)) or "none"
        log.info("http shim on %s (CORS origins: %s)", url, origins)
        yield Shim(url, link)
    finally:
        await runner.cleanup()
        await link.close()
