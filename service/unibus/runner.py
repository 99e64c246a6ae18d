"""Bringing the whole thing up and down: embedded nats-server (if no URL), connection,
control plane, and optionally the HTTP shim. Used by `unibus serve` and by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client

from .app import ControlPlane, connect
from .config import Config
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


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Running]:
    server: NatsServer | None = None
    url = config.nats_url
    if url is None:
        spec = embedded_spec(config.data_dir, config.embedded_port, config.websocket_port)
        server = await asyncio.to_thread(NatsServer(spec).start)
        url = server.url
        log.info("embedded nats-server on %s (websocket %s)", url, spec.websocket_url)
    try:
        nc = await connect(config, url)
        try:
            plane = await ControlPlane(config, nc).start()
            try:
                yield Running(config, url, nc, plane, server, server.spec.websocket_url if server else None)
            finally:
                await plane.stop()
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
    finally:
        if server is not None:
            await server.astop()


async def serve_forever(config: Config, stop: asyncio.Event) -> None:
    async with running(config) as run:
        print(f"unibus control plane ready: nats {run.nats_url}", flush=True)
        if run.websocket_url:
            print(f"websocket for browsers: {run.websocket_url}", flush=True)
        await stop.wait()
