"""What the shim needs to know: where to listen, which origins may call it, and its limits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from ..config import Config, parse_listen
from ..wire import names


@dataclass(frozen=True)
class ShimSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    """0 picks a free port (the bound one is reported by `Shim.url`)."""
    allow_origins: frozenset[str] = frozenset()
    """Browser origins granted CORS; none by default, `*` grants any (requests stay signed)."""
    api_prefix: str = names.CONTROL_PREFIX
    service_name: str = names.SERVICE_NAME
    request_timeout_s: float = 10.0
    """Longer than the service's own JetStream bound, so its 503 arrives before our 504."""
    health_timeout_s: float = 1.0
    max_in_flight: int = 256
    """NATS requests relayed at once; beyond it callers get 503 at once instead of queueing."""
    idle_timeout_s: float = 15.0
    """A connection that sends no complete request for this long is closed (slow clients)."""
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 64
    metrics_listen: str | None = None
    """`host:port` for the shim's own Prometheus endpoint (`unibus shim` alone: beside the
    service, `unibus serve --http`, the service's endpoint is the one configured)."""

    @classmethod
    def from_config(cls, config: Config, listen: str, origins: Iterable[str] | None = None) -> ShimSettings:
        """Shim settings for a service config; origins default to its `cors_origins`."""
        host, port = parse_listen(listen)
        chosen = config.allowed_origins if origins is None else frozenset(o for o in origins if o)
        return cls(
            host=host,
            port=port,
            allow_origins=chosen,
            api_prefix=config.api_prefix,
            service_name=config.service_name,
        )


SETTINGS = web.AppKey("settings", ShimSettings)
