"""Bringing the whole thing up and down: embedded nats-server (if no URL), connection,
control plane, and optionally the HTTP shim. Used by `unibus serve` and by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.aio.client import Client

from .app import ControlPlane
from .callout import serverconf
from .callout.keys import BoundaryKeys, boundary_keys
from .config import Config
from .datadir import exclusive
from .links import open_links
from .natsserver import NatsServer, embedded_spec

log = logging.getLogger(__name__)
T = TypeVar("T")


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
async def embedded(config: Config, keys: BoundaryKeys) -> AsyncIterator[NatsServer]:
    """The embedded nats-server on `config.data_dir`, which this process holds for as
    long as it runs (datadir.py). It always runs the boundary: JetStream is never open
    to anyone."""
    with exclusive(config.data_dir):
        spec = embedded_spec(
            config.data_dir, config.embedded_port, config.websocket_port, config.embedded_monitor_port
        )
        spec.extra = serverconf.render(keys.public(), config.api_prefix)
        server = await asyncio.to_thread(NatsServer(spec).start)
        log.info(
            "embedded nats-server on %s (websocket %s, monitoring %s; log %s)",
            server.url,
            spec.websocket_url,
            spec.monitor_url or "off",
            server.log_path,
        )
        try:
            yield server
        finally:
            await server.astop()


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Running]:
    url = config.nats_url
    keys = boundary_keys(config)
    async with contextlib.AsyncExitStack() as stack:
        server: NatsServer | None = None
        if url is None:
            assert keys is not None  # boundary_keys makes them for the embedded server
            server = await stack.enter_async_context(embedded(config, keys))
            url = server.url
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
    """Run until `stop`; `announce` tells the user once everything answers."""
    await _until_stopped(running(config), stop, announce, "control plane")


async def serve_nats_only(
    config: Config, stop: asyncio.Event, announce: Callable[[NatsServer], None]
) -> None:
    """The embedded nats-server alone, with the boundary and no control plane: what a
    restore needs (docs/operations.md), since `unibus restore` refuses while an instance
    answers."""
    keys = boundary_keys(config)
    assert keys is not None
    await _until_stopped(embedded(config, keys), stop, announce, "embedded nats-server")


async def _until_stopped(
    what: contextlib.AbstractAsyncContextManager[T],
    stop: asyncio.Event,
    announce: Callable[[T], None],
    name: str,
) -> None:
    """Enter `what`, announce it, and leave on `stop`, logging one "stopped" line. A stop
    that comes while still starting (NATS not reachable yet) abandons the start."""
    async with contextlib.AsyncExitStack() as stack:
        starting = asyncio.ensure_future(stack.enter_async_context(what))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            log.info("%s stopped before it was ready", name)
            return
        stopped.cancel()
        announce(starting.result())
        await stop.wait()
    log.info("%s stopped", name)
