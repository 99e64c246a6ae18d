"""`rooms.<id>.history`: the durable backlog of a room, oldest first, as stored."""

from __future__ import annotations

from ..history import reader as history
from ..streams import StreamState, room_stream_for_read, snapshot_of
from ..wire.names import stream_name
from .context import Call, Reply


async def read(call: Call) -> Reply:
    deps = call.deps
    accept = call.headers.get("Accept")
    if deps.js is None:
        # No JetStream: the room works, it just has no durable backlog.
        await call.member_room()
        return _empty(history.parse_query(call.body), None).encode(accept)
    timeout = deps.config.js_timeout_s
    assert call.room_id is not None
    # The stream's state is asked for while membership is checked, saving a round trip:
    # its name comes from the room id, and a refusal drops the answer unread.
    info = deps.streams_index.ask(stream_name(call.room_id))
    try:
        room = await call.member_room()
        query = history.parse_query(call.body)
    except BaseException:
        info.cancel()
        raise
    snapshot = await snapshot_of(info)
    state = await room_stream_for_read(deps.js, room, deps.streams, timeout, snapshot)
    win = history.window(state, query)
    if state is None or win is None:
        return _empty(query, state).encode(accept)
    budget = history.PageBudget.for_reply(deps.nc.max_payload, accept)
    if query.after is None:
        page = await deps.frames.read(deps.nc, room.stream, state, win, timeout, budget)
        return page.encode(accept)
    # A forward page is cut from its new end, which the cache's pages never are: read it
    # from the stream (a follower asks once per reconnect or gap, not per frame).
    forward = await history.read_window(deps.nc, room.stream, win, timeout, budget, forward=True)
    return forward.page.with_stream_last(state).encode(accept)


def _empty(query: history.HistoryQuery, state: StreamState | None) -> history.History:
    """No frames in the window; a reply to `after` still names the stream's end."""
    return history.EMPTY if query.after is None else history.EMPTY.with_stream_last(state)
