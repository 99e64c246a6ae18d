"""Room streams whose room never came: found and removed.

`create` makes the room's stream before its row, so a crash in between (measured: `kill -9`
during creates left streams without rows) leaves a stream that captures the subject, and
whoever later creates that id would inherit what was published meanwhile. Every stream the
service creates carries the metadata `unibus.room: <id>` and its control prefix. A stream
with that mark and this deployment's prefix, no row
for its room, and older than `MIN_AGE_S` (so a create still in flight on another instance
is never mistaken for one) is deleted. Streams without the mark are never touched: a Go
client's own stream for a room created before this service existed is adopted, as ever,
by the lazy backfill.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import Any

import nats.js.errors as jserr
from nats.aio.client import Client
from nats.js import JetStreamContext

from .storage import RoomStore
from .streams import PREFIX_MARK, ROOM_MARK
from .wire import jsapi

log = logging.getLogger(__name__)

MIN_AGE_S = 300.0
"""A stream younger than this is never an orphan: its create may still be writing the row."""


async def sweep(
    nc: Client,
    js: JetStreamContext,
    store: RoomStore,
    subject_prefix: str,
    api_prefix: str,
    timeout_s: float,
    min_age_s: float = MIN_AGE_S,
) -> list[str]:
    """Delete the marked room streams that have no room; the names deleted."""
    await store.catch_up()
    now = datetime.datetime.now(datetime.UTC)
    deleted = []
    for info in await _room_streams(nc, subject_prefix, timeout_s):
        metadata = (info.get("config") or {}).get("metadata") or {}
        room_id = metadata.get(ROOM_MARK)
        if not room_id or metadata.get(PREFIX_MARK) != api_prefix or await store.get(room_id) is not None:
            continue  # not ours: unmarked, another deployment's, or a room that exists
        created = datetime.datetime.fromisoformat(info["created"].replace("Z", "+00:00"))
        if (now - created).total_seconds() < min_age_s:
            continue
        name = info["config"]["name"]
        with contextlib.suppress(jserr.NotFoundError):
            await asyncio.wait_for(js.delete_stream(name), timeout_s)
            log.warning(
                "deleted stream %s: its room %s was never created (a crash mid-create)", name, room_id
            )
            deleted.append(name)
    return deleted


async def _room_streams(nc: Client, subject_prefix: str, timeout_s: float) -> list[dict[str, Any]]:
    """Every stream capturing a room subject, page by page (STREAM.LIST with a filter)."""
    found: list[dict[str, Any]] = []
    while True:
        reply = await jsapi.request(
            nc, "STREAM.LIST", {"offset": len(found), "subject": f"{subject_prefix}.*"}, timeout_s
        )
        page = reply.get("streams") or []
        found.extend(page)
        if not page or len(found) >= int(reply.get("total", 0)):
            return found
