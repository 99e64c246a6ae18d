"""One raw JetStream API request: `$JS.API.<api>` with a JSON body, its JSON answer, and
JetStream's `{"error": {...}}` raised as nats-py's own `APIError` (its `NotFoundError`,
`BadRequestError`, … subclasses by HTTP code), exactly as nats-py's JetStream manager does.

Raw, not nats-py's JetStream manager, where the decoded answer costs more than the round
trip (the history hot path reads three numbers of STREAM.INFO) or where nats-py has no call
(snapshot, restore). Callers compare `err_code` with `wire/jscodes.py`.
"""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client
from nats.js.errors import APIError

API_PREFIX = "$JS.API"


async def request(nc: Client, api: str, payload: dict[str, Any] | None, timeout_s: float) -> dict[str, Any]:
    """`$JS.API.<api>` (e.g. `STREAM.INFO.<name>`); `payload=None` sends an empty body."""
    body = json.dumps(payload).encode() if payload is not None else b""
    reply = await nc.request(f"{API_PREFIX}.{api}", body, timeout=timeout_s)
    return answer(reply.data)


def answer(data: bytes) -> dict[str, Any]:
    """A JetStream API answer (or a restore's final one), raising its error if it is one."""
    result: dict[str, Any] = json.loads(data)
    error = result.get("error")
    if error is not None:
        APIError.from_error(error)  # always raises
    return result


async def stream_names(nc: Client, subject: str | None, timeout_s: float) -> list[str]:
    """Every stream's name (those capturing `subject`, if given), page by page from
    `STREAM.NAMES`: answered by the meta layer, so it never leaves out a stream whose
    leader is electing, as `STREAM.LIST` can, and costs a name each, not an info."""
    names: list[str] = []
    while True:
        body: dict[str, Any] = {"offset": len(names)}
        if subject is not None:
            body["subject"] = subject
        reply = await request(nc, "STREAM.NAMES", body, timeout_s)
        page = reply.get("streams") or []
        names.extend(page)
        if not page or len(names) >= int(reply.get("total", 0)):
            return names
