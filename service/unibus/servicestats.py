"""Feeding nats.micro's per-endpoint statistics (`$SRV.STATS`) from where requests finish,
and registering an endpoint whose requests arrive on another connection.

The framework times a request by its handler, and ours returns at once, having handed
the request to a task (`app.py`): left alone, `nats micro stats` would show every request
taking microseconds and none failing. nats-py keeps those counters in private fields of
its endpoint objects, with no public way to add to them; this module is the one place that
touches them, so a change in nats-py has one place to be mended.

The auth callout is an endpoint of the service like any other (in `$SRV.INFO` and
`$SRV.STATS`), but its requests must arrive on a connection of its own, whose user may
publish callout answers only (docs/security.md): nats.micro subscribes every endpoint on
the service's own connection, so `add_endpoint_on` builds the endpoint and subscribes it
on the connection it is given.
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client
from nats.micro.request import Handler
from nats.micro.service import Endpoint, EndpointConfig, Service


async def add_endpoint_on(
    client: Client, service: Service, name: str, subject: str, handler: Handler
) -> None:
    """An endpoint of `service` (its queue group, its `$SRV` answers, its counters) whose
    requests `client` receives and answers."""
    config = EndpointConfig(name=name, subject=subject, handler=handler, queue_group=service._queue_group)
    endpoint = Endpoint(service, config)
    endpoint._subscription = await client.subscribe(
        subject, queue=endpoint._queue_group, cb=endpoint._handle_request
    )
    service._endpoints.append(endpoint)


class ServiceStats:
    def __init__(self, service: Service) -> None:
        self._service = service
        self._endpoints: dict[str, Any] = {}

    def record(self, endpoint: str, elapsed_ns: int, error: str | None = None) -> None:
        """One request of `endpoint` finished after `elapsed_ns`, with `error` ("403 not a
        member of this room") if it was answered with one. The framework has already
        counted the request itself."""
        found = self._endpoint(endpoint)
        if found is None:
            return
        found._processing_time += elapsed_ns
        found._average_processing_time = int(found._processing_time / max(1, found._num_requests))
        if error is not None:
            found._num_errors += 1
            found._last_error = error

    def _endpoint(self, name: str) -> Any:
        if name not in self._endpoints:
            endpoints = getattr(self._service, "_endpoints", None) or []
            self._endpoints[name] = next((e for e in endpoints if getattr(e, "_name", None) == name), None)
        return self._endpoints[name]
