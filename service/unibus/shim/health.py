"""`GET /healthz`: ready only when NATS is connected and a control-plane instance answers.

The service check is a `$SRV.PING.<name>` request, which any instance answers without
touching JetStream, so probing health costs the service almost nothing.
"""

from __future__ import annotations

import nats.errors
from aiohttp import web

from ..wire.names import ping_subject
from .link import LINK, CannotRelay
from .settings import SETTINGS


async def healthz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    link = request.app[LINK]
    if not link.connected:
        return _report("disconnected", "unknown", link.reason)
    try:
        await link.request(ping_subject(settings.service_name), b"", {}, settings.health_timeout_s)
    except CannotRelay as exc:
        return _report("connected" if link.connected else "disconnected", str(exc))
    except nats.errors.NoRespondersError:
        return _report("connected", "no responders")
    except nats.errors.TimeoutError:
        return _report("connected", "timeout")
    return _report("connected", "ok")


def _report(nats_state: str, service_state: str, reason: str | None = None) -> web.Response:
    """`reason`: why NATS is disconnected (an authorization failure names the setting)."""
    healthy = nats_state == "connected" and service_state == "ok"
    body = {"nats": nats_state, "service": service_state} | ({"reason": reason} if reason else {})
    return web.json_response(body, status=200 if healthy else 503)
