"""`rooms.<id>.history`: the durable backlog of a room, oldest first, as stored."""

from __future__ import annotations

from .. import history
from ..streams import room_stream_for_read
from .context import Call, Reply


async def read(call: Call) -> Reply:
    room = await call.member_room()
    query = history.parse_query(call.body)
    deps = call.deps
    accept = call.headers.get("Accept")
    if deps.js is None:
        # No JetStream: the room works, it just has no durable backlog.
        return history.EMPTY.encode(accept)
    timeout = deps.config.js_timeout_s
    state = await room_stream_for_read(deps.nc, deps.js, room, deps.streams, timeout)
    win = history.window(state, query)
    if win is None:
        return history.EMPTY.encode(accept)
    budget = history.PageBudget.for_reply(deps.nc.max_payload, accept)
    frames, kept = await history.read_window(deps.nc, room.stream, win, timeout, budget)
    return history.History(frames, kept).encode(accept)
