"""Errors the shim itself answers, shaped like the service's own: `{"error": message}`."""

from __future__ import annotations

from aiohttp import web


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
