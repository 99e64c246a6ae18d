"""The aiohttp application and its server, with the limits that keep abusive clients cheap.

aiohttp bounds the request line and header sizes (431/400 past them) and closes a
connection that sends no complete request within `idle_timeout_s`, so slow-header
clients are dropped; the link bounds the NATS work in flight. Nothing here keeps state
between requests, so any number of shims can stand behind a load balancer.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from ..config import CannotListen
from ..identity import Identity
from ..metrics import MetricsServer, RequestMetrics
from .cors import cors
from .health import healthz
from .link import LINK, NatsLink
from .relay import history
from .settings import SETTINGS, ShimSettings

log = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger("unibus.shim.access")


def build_app(
    settings: ShimSettings, link: NatsLink, metrics: RequestMetrics | None = None
) -> web.Application:
    middlewares = [cors] if metrics is None else [measured(metrics), cors]
    app = web.Application(middlewares=middlewares)
    app.on_response_prepare.append(_anonymous_server)
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
    metrics_url: str | None = None
    """The Prometheus endpoint, as bound, when `metrics_listen` asked for one."""


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
    metrics, metrics_server = None, None
    if settings.metrics_listen:
        registry = CollectorRegistry()
        metrics = RequestMetrics(registry, "unibus_shim", "route")
        metrics_server = MetricsServer(settings.metrics_listen, registry)
    runner = web.AppRunner(
        build_app(settings, link, metrics),
        # One line per request under `unibus.shim.access` (method, path and query, status,
        # size, time); the query carries no secret, the signature travels in headers.
        access_log=ACCESS_LOG,
        access_log_format='%a "%r" %s %b %Tf',
        keepalive_timeout=settings.idle_timeout_s,
        max_line_size=settings.max_line_size,
        max_field_size=settings.max_field_size,
        max_headers=settings.max_headers,
        shutdown_timeout=2.0,
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise CannotListen("HTTP shim", f"{settings.host}:{settings.port}", exc) from exc
        host, port = runner.addresses[0][:2]
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        origins = ", ".join(sorted(settings.allow_origins)) or "none"
        log.info("http shim on %s (CORS origins: %s)", url, origins)
        yield Shim(url, link, metrics_server.url if metrics_server is not None else None)
    finally:
        await runner.cleanup()
        await link.close()
        if metrics_server is not None:
            metrics_server.close()


async def _anonymous_server(request: web.Request, response: web.StreamResponse) -> None:
    """No `Server: Python/… aiohttp/…`: versions help an attacker choose, nobody else."""
    response.headers["Server"] = "unibus"


def measured(metrics: RequestMetrics) -> Middleware:
    """Requests by route pattern (never the raw path: room ids would make a series each)
    and status, with their latency."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        started = time.perf_counter()
        metrics.in_flight.inc()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.in_flight.dec()
            metrics.observe(name, status, time.perf_counter() - started)

    return middleware
