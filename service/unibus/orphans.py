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

The sweep lists names, not streams: `STREAM.NAMES` is answered from the meta layer, while
`STREAM.LIST` gathers every stream's info from its leader (2.4-2.5 s and megabytes of
JSON at 10,000 streams, at every start and every `ORPHAN_SWEEP_S`, measured). A stream
named after a room in the copy is that room's and is passed over without a request; only
the rest, nearly always none, are asked for their info.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging

import nats.js.errors as jserr
from nats.aio.client import Client
from nats.js import JetStreamContext

from .storage import RoomStore
from .streams import PREFIX_MARK, ROOM_MARK
from .wire import jsapi
from .wire.names import ROOM_STREAM_PREFIX

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
    for name in await jsapi.stream_names(nc, f"{subject_prefix}.*", timeout_s):
        if (
            name.startswith(ROOM_STREAM_PREFIX)
            and store.cached(name.removeprefix(ROOM_STREAM_PREFIX)) is not None
        ):
            continue  # its room exists: nearly every stream, and no request for it
        try:
            info = await jsapi.request(nc, f"STREAM.INFO.{name}", None, timeout_s)
        except jserr.NotFoundError:
            continue  # deleted meanwhile
        except Exception as exc:  # one stream without a leader must not hold up the rest
            log.warning("orphan sweep: stream %s not read (%r); next sweep", name, exc)
            continue
        metadata = (info.get("config") or {}).get("metadata") or {}
        room_id = metadata.get(ROOM_MARK)
        if not room_id or metadata.get(PREFIX_MARK) != api_prefix or await store.get(room_id) is not None:
            continue  # not ours: unmarked, another deployment's, or a room that exists
        created = datetime.datetime.fromisoformat(info["created"].replace("Z", "+00:00"))
        if (now - created).total_seconds() < min_age_s:
            continue
        with contextlib.suppress(jserr.NotFoundError):
            await asyncio.wait_for(js.delete_stream(name), timeout_s)
            log.warning(
                "deleted stream %s: its room %s was never created (a crash mid-create)", name, room_id
            )
            deleted.append(name)
    return deleted
