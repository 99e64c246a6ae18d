"""`rooms.<id>.history`: the durable backlog of a room, oldest first, as stored
(history/: the membership check is handed to the backlog, which runs it while the
room stream's state is asked for)."""

from __future__ import annotations

from collections.abc import Awaitable

from .context import Call, Reply


def read(call: Call) -> Awaitable[Reply]:
    # The backlog's own coroutine is returned, not awaited here: no extra frame per read.
    assert call.room_id is not None
    return call.deps.backlog.page(call.room_id, call.member_room, call.body, call.headers.get("Accept"))
