"""`rooms.<id>.history`: the durable backlog of a room, oldest first, as stored."""

from __future__ import annotations

from .. import history
from ..streams import StreamState, ensure_room_stream, room_stream_state
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
    state: StreamState | None
    if room.persisted:
        # Lazy backfill: a room created before streams were owned here starts capturing now.
        state = await ensure_room_stream(deps.js, room, deps.replicas, timeout)
    else:
        state = await room_stream_state(deps.js, room.stream, timeout)
    win = history.window(state, query)
    if win is None:
        return history.EMPTY.encode(accept)
    frames = await history.read_window(deps.nc, room.stream, win, timeout)
    return history.History(frames, win).encode(accept)
