"""Bringing the whole thing up and down: embedded nats-server (if no URL), connection,
control plane, and optionally the HTTP shim. Used by `unibus serve` and by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from nats.aio.client import Client

from .app import ControlPlane
from .callout import serverconf
from .callout.keys import boundary_keys
from .config import Config
from .links import open_links
from .natsserver import NatsServer, embedded_spec

log = logging.getLogger(__name__)


@dataclass
class Running:
    config: Config
    nats_url: str
    nc: Client
    plane: ControlPlane
    server: NatsServer | None
    websocket_url: str | None
    http_url: str | None = None


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Running]:
    server: NatsServer | None = None
    url = config.nats_url
    keys = boundary_keys(config)
    if url is None:
        # The embedded server always runs the boundary: JetStream is never open to anyone.
        assert keys is not None
        spec = embedded_spec(config.data_dir, config.embedded_port, config.websocket_port)
        spec.extra = serverconf.render(keys.public(), config.api_prefix)
        server = await asyncio.to_thread(NatsServer(spec).start)
        url = server.url
        log.info("embedded nats-server on %s (websocket %s)", url, spec.websocket_url)
    try:
        links = await open_links(config, url, keys)
        try:
            plane = await ControlPlane(config, links).start()
            try:
                async with _http_shim(config, links.service) as http_url:
                    websocket_url = server.spec.websocket_url if server else None
                    yield Running(config, url, links.service, plane, server, websocket_url, http_url)
            finally:
                await plane.stop()
        finally:
            await links.close()
    finally:
        if server is not None:
            await server.astop()


@contextlib.asynccontextmanager
async def _http_shim(config: Config, nc: Client) -> AsyncIterator[str | None]:
    """The HTTP shim on the service's own connection, when `http_listen` asks for it.
    Imported here because aiohttp is an optional extra."""
    if config.http_listen is None:
        yield None
        return
    from .shim import ShimSettings, serving

    async with serving(ShimSettings.from_config(config, config.http_listen), nc=nc) as shim:
        yield shim.url


async def serve_forever(config: Config, stop: asyncio.Event, announce: Callable[[Running], None]) -> None:
    """Run until `stop`; `announce` tells the user once everything answers. A stop that
    comes while still starting (NATS not reachable yet) abandons the start."""
    async with contextlib.AsyncExitStack() as stack:
        starting = asyncio.ensure_future(stack.enter_async_context(running(config)))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return
        stopped.cancel()
        announce(starting.result())
        await stop.wait()
