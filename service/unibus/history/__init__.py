"""Reading a room's backlog: one entry, `Backlog.page`, which the history endpoint calls
once per request (docs/architecture.md).

Following one request top-down, as `page` runs it:
- the room stream's state is asked for while the caller's membership is checked, saving
  a round trip (its name comes from the room id; a refusal drops the answer unread), and
  the stream is ensured on the way if it is missing or not as its policy wants (state.py);
- the query names a window of stream sequences (query.py);
- a page back (the newest, or `before`) comes from the frame cache, which reads JetStream
  for only what it does not hold (cache.py, reader.py); a page forwards (`after`) is read
  from the stream, since it is cut from its new end and the cache's pages never are
  (a follower asks once per reconnect or gap, not per frame);
- the reply is budgeted and encoded in what the caller accepts (reply.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.js import JetStreamContext

from ..readindex import ReadIndex
from ..storage.rooms import Room
from ..streams import StreamPolicy
from ..wire.names import stream_name
from .cache import FrameCache
from .query import HistoryQuery, parse_query, window
from .reader import read_window
from .reply import EMPTY, HistoryReply, PageBudget
from .state import StreamState, room_stream_for_read, snapshot_of


class Backlog:
    """Every room's backlog as this instance reads it: one connection, one frame cache
    and one read index of the room streams' state, shared by every history request."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext | None,
        policy: StreamPolicy,
        timeout_s: float,
        cache_bytes: int,
    ) -> None:
        self._nc = nc
        self._js = js
        """None: no JetStream, so rooms work without a durable backlog."""
        self._policy = policy
        self._timeout = timeout_s
        self._states = ReadIndex(nc, timeout_s)
        """Room streams' state, one request shared by concurrent reads."""
        self.cache = FrameCache(cache_bytes)
        """Public for its figures only (metrics.py)."""

    async def page(
        self,
        room_id: str,
        member_room: Callable[[], Awaitable[Room]],
        body: bytes,
        accept: str | None,
    ) -> tuple[bytes, dict[str, str]]:
        """The reply to one history request: `body` is its query, `accept` the encoding
        asked for. `member_room` is the caller's membership check (refusing with 404 or
        403): passed in rather than made first, so that the stream's state is asked for
        while it runs."""
        if self._js is None:
            await member_room()
            return _empty(parse_query(body), None).encode(accept)
        asked = self._states.ask(stream_name(room_id))
        try:
            room = await member_room()
            query = parse_query(body)
        except BaseException:
            asked.cancel()
            raise
        snapshot = await snapshot_of(asked)
        state = await room_stream_for_read(self._js, room, self._policy, self._timeout, snapshot)
        win = window(state, query)
        if state is None or win is None:
            return _empty(query, state).encode(accept)
        budget = PageBudget.for_reply(self._nc.max_payload, accept)
        if query.after is None:
            back = await self.cache.read(self._nc, room.stream, state, win, self._timeout, budget)
            return back.encode(accept)
        whole = state.stores_every_from(win.first_seq)
        forward = await read_window(
            self._nc, room.stream, win, self._timeout, budget, forward=True, whole=whole
        )
        return forward.page.with_stream_last(state).encode(accept)


def _empty(query: HistoryQuery, state: StreamState | None) -> HistoryReply:
    """No frames in the window; a reply to `after` still names the stream's end."""
    return EMPTY if query.after is None else EMPTY.with_stream_last(state)


__all__ = ["Backlog"]
