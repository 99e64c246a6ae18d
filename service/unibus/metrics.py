"""Prometheus metrics for the service and the shim, off unless `UNIBUS_METRICS_LISTEN`
names where to serve them.

Each process (or each control plane in a test process) has its own registry, served on
its own loopback-or-chosen port by prometheus-client's HTTP server thread: the service
itself listens on nothing but NATS otherwise, and a scrape never competes with requests
for the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .config import CannotListen, parse_listen

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RequestMetrics:
    """Requests by endpoint (or route) and status code, their latency, and how many are
    in flight: the same three for the service's NATS endpoints and the shim's HTTP routes."""

    def __init__(self, registry: CollectorRegistry, prefix: str, label: str) -> None:
        self.requests = Counter(
            f"{prefix}_requests", "Requests answered, by status code", [label, "code"], registry=registry
        )
        self.latency = Histogram(
            f"{prefix}_request_seconds",
            "Time from a request's arrival to its answer",
            [label],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(f"{prefix}_requests_in_flight", "Requests being handled", registry=registry)

    def observe(self, name: str, code: int, seconds: float) -> None:
        self.requests.labels(name, str(code)).inc()
        self.latency.labels(name).observe(seconds)


class ServiceMetrics(RequestMetrics):
    """The service's request figures, plus the two kinds of trouble worth an alert: the
    data plane (JetStream) failing requests, and the auth callout's decisions and time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry, "unibus", "endpoint")
        self.jetstream_errors = Counter(
            "unibus_jetstream_errors",
            "Requests answered 503 because JetStream failed them, by endpoint and error",
            ["endpoint", "error"],
            registry=registry,
        )
        self.callout_decisions = Counter(
            "unibus_callout_decisions",
            "Auth callout answers: admitted (member or anonymous), refused, or unreadable",
            ["decision"],
            registry=registry,
        )
        self.callout_latency = Histogram(
            "unibus_callout_seconds",
            "Time to answer one auth callout request (each NATS connection waits on it)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class CacheFigures(Protocol):
    """What the history cache shows (history/cache.py's `FrameCache`): named here, not
    imported, so the shim's metrics load none of the service's history code."""

    @property
    def size(self) -> int: ...
    @property
    def max_bytes(self) -> int: ...
    @property
    def hits(self) -> int: ...
    @property
    def misses(self) -> int: ...


class CacheCollector(Collector):
    """The frame cache's figures, read when scraped (nothing to update per request)."""

    def __init__(self, cache: CacheFigures) -> None:
        self._cache = cache

    def collect(self) -> Iterable[Metric]:
        cache, name = self._cache, "unibus_history_cache"
        yield GaugeMetricFamily(f"{name}_bytes", "Frame bytes the history cache holds", cache.size)
        yield GaugeMetricFamily(f"{name}_limit_bytes", "The history cache's bound", cache.max_bytes)
        yield CounterMetricFamily(f"{name}_hits", "History reads served from the cache", cache.hits)
        yield CounterMetricFamily(f"{name}_misses", "History reads from JetStream", cache.misses)


class MetricsServer:
    """prometheus-client's HTTP server on `listen` (`host:port`), for one registry."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        host, port = parse_listen(listen)
        try:
            server, self._thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise CannotListen("metrics endpoint", listen, exc) from exc
        self._server: WSGIServer = server
        self.port = int(server.server_address[1])
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{self.port}/metrics"
        """As bound: the real port when 0 was asked for."""

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
