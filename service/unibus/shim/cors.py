"""CORS for browser apps served from another origin than the shim's.

Only listed origins get a grant (none by default). A request is authenticated by its
signature headers, never by cookies, so credentials are not allowed and `*` in the list
is safe for a public deployment. Every response says `Vary: Origin`, so a cache never
hands one origin's grant to another.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from .errors import error
from .relay import FORWARDED
from .settings import SETTINGS

ALLOW_HEADERS = ", ".join((*FORWARDED, "traceparent", "tracestate"))
PREFLIGHT_MAX_AGE_S = "600"


def granted(request: web.Request) -> str | None:
    """The origin to echo in `Access-Control-Allow-Origin`, or None for no grant."""
    origin = request.headers.get("Origin")
    allowed = request.app[SETTINGS].allow_origins
    if origin is None or not (origin in allowed or "*" in allowed):
        return None
    return origin


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = granted(request)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        if origin is not None:
            response.headers["Access-Control-Allow-Methods"] = "GET, HEAD"
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # 404/405 from the router: still readable cross-origin
            response = error(exc.status, exc.reason)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
    response.headers.add("Vary", "Origin")
    return response
