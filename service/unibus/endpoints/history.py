"""`rooms.<id>.history`: the durable backlog of a room, oldest first, as stored."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import history
from ..streams import room_stream_for_read, room_stream_snapshot
from ..wire.names import stream_name
from .context import Call, Reply


async def read(call: Call) -> Reply:
    deps = call.deps
    accept = call.headers.get("Accept")
    if deps.js is None:
        # No JetStream: the room works, it just has no durable backlog.
        await call.member_room()
        history.parse_query(call.body)
        return history.EMPTY.encode(accept)
    timeout = deps.config.js_timeout_s
    assert call.room_id is not None
    # The stream's state is asked for while membership is checked, saving a round trip:
    # its name comes from the room id, and a refusal drops the answer unread.
    snapshot = asyncio.ensure_future(room_stream_snapshot(deps.nc, stream_name(call.room_id), timeout))
    snapshot.add_done_callback(_retrieved)
    try:
        room = await call.member_room()
        query = history.parse_query(call.body)
    except BaseException:
        snapshot.cancel()
        raise
    state = await room_stream_for_read(deps.js, room, deps.streams, timeout, await snapshot)
    win = history.window(state, query)
    if state is None or win is None:
        return history.EMPTY.encode(accept)
    budget = history.PageBudget.for_reply(deps.nc.max_payload, accept)
    page = await deps.frames.read(deps.nc, room.stream, state, win, timeout, budget)
    return page.encode(accept)


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A snapshot dropped after a refusal may have failed too: that is not news."""
    if not task.cancelled():
        task.exception()
