"""`GET /rooms/<id>/history` → the NATS request `<prefix>.rooms.<id>.history`.

The NATS body is the query string exactly as the client sent it (no leading `?`), and the
four `Unibus-*` headers travel unchanged: the signature covers the subject and those
bytes, so re-encoding the query (or dropping a header) would turn a valid request into a
401. The service's reply body is returned as is; its ADR-32 error code becomes the status.
"""

from __future__ import annotations

import re

import nats.errors
from aiohttp import web

from ..wire.ids import ROOM_ID_RULE, is_room_id
from ..wire.names import ERROR_CODE_HEADER, control_subject
from ..wire.signing import HEADERS as SIGNATURE_HEADERS
from .errors import error
from .link import LINK, CannotRelay
from .settings import SETTINGS

FORWARDED = (*SIGNATURE_HEADERS, "Accept")
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
"""W3C Trace Context's `traceparent` (version, trace id, parent id, flags)."""


async def history(request: web.Request) -> web.Response:
    room_id = request.match_info["id"]
    if not is_room_id(room_id):
        return error(400, f"room id must be {ROOM_ID_RULE}")
    settings = request.app[SETTINGS]
    subject = control_subject(settings.api_prefix, f"{room_id}.history")
    # raw_path is the request target as received; yarl's query_string would be decoded.
    query = request.raw_path.partition("?")[2].encode("utf-8", "surrogateescape")
    headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
    for name, value in headers.items():
        # NATS headers are printable ASCII; anything else would fail inside the publish
        # (after the client registered its reply), so it is refused here, unsent.
        if not (value.isascii() and value.isprintable()):
            return error(400, f"header {name} must be printable ASCII")
    headers.update(trace_context(request))
    try:
        reply = await request.app[LINK].request(subject, query, headers, settings.request_timeout_s)
    except CannotRelay as exc:
        return error(503, str(exc))
    except nats.errors.NoRespondersError:
        nobody = f"no responders available for request: no control plane instance subscribes to {subject}"
        return error(503, nobody)
    except nats.errors.TimeoutError:
        return error(504, "the control plane did not answer in time")
    reply_headers = reply.headers or {}
    return web.Response(
        body=reply.data,
        status=_status(reply_headers.get(ERROR_CODE_HEADER)),
        headers={"Content-Type": reply_headers.get("Content-Type", "application/json")},
    )


def trace_context(request: web.Request) -> dict[str, str]:
    """The caller's W3C trace context, for the NATS request: a trace begun in the
    browser continues through the service. A malformed `traceparent` is dropped with
    its `tracestate`, as the spec asks of a participant; it never fails the request."""
    parent = request.headers.get("traceparent", "").strip()
    if not TRACEPARENT.match(parent) or parent.startswith("ff"):
        return {}
    context = {"traceparent": parent}
    state = request.headers.get("tracestate", "")
    if state and state.isascii() and state.isprintable() and len(state) <= 512:
        context["tracestate"] = state
    return context


def _status(code: str | None) -> int:
    if code is None:
        return 200
    if code.isdigit() and 400 <= int(code) <= 599:
        return int(code)
    return 502  # an error reply we cannot map is the upstream's fault, not the caller's
