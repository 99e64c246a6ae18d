"""A history request's query, and the window of stream sequences it names.

The window is a range of stream sequences, the last `limit` up to the end (the stream's
last message, or just before `before`). Deleted or purged sequences inside it are
skipped, so a page may hold fewer than `limit` frames; `first_seq` is where the next
page back starts (`before=first_seq`). A reply without `first_seq` means nothing older.

With `after` the window runs the other way, for a follower catching up: the first
`limit` sequences after `after`, and the reply names the stream's last sequence
(`stream_last_seq`), so the follower knows whether it has caught up and which
sequences it will never get (docs/protocol.md, "Following a room").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl

from ..errors import bad_request
from .state import StreamState

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000


@dataclass(frozen=True)
class HistoryQuery:
    limit: int = DEFAULT_LIMIT
    before: int | None = None
    after: int | None = None
    """Frames stored at sequences above this one, oldest first (a follower's cursor)."""


_SHORT_QUERY = 64
"""Bodies up to this long are parsed once: peers send the same few queries (`limit=50`)
over and over, and `parse_qsl` costs more than the rest of a warm read's query handling."""


def parse_query(body: bytes) -> HistoryQuery:
    """The request body is a URL query string, the same bytes the HTTP shim relays.

    `limit` is forgiving, as in the original endpoint: absent, malformed or <= 0 gives the
    default, above the cap gives the cap. `before` names a sequence, so a malformed one is
    an error rather than a silent jump to the newest page."""
    return _parse_short(body) if len(body) <= _SHORT_QUERY else _parse(body)


@lru_cache(maxsize=256)
def _parse_short(body: bytes) -> HistoryQuery:
    return _parse(body)  # a refusal raises, and is not remembered


def _parse(body: bytes) -> HistoryQuery:
    try:
        text = body.decode("ascii").removeprefix("?")
        params = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=32))
    except (UnicodeDecodeError, ValueError):
        raise bad_request("history query must be an ASCII URL query string") from None
    before, after = _before(params.get("before")), _after(params.get("after"))
    if before is not None and after is not None:
        raise bad_request("after and before cannot be combined: page forwards or backwards")
    return HistoryQuery(limit=_limit(params.get("limit")), before=before, after=after)


def _limit(raw: str | None) -> int:
    if raw is None or not raw.isascii() or not raw.isdigit():
        return DEFAULT_LIMIT
    value = int(raw)
    return DEFAULT_LIMIT if value <= 0 else min(value, MAX_LIMIT)


def _before(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        raise bad_request("before must be a positive stream sequence")
    value = int(raw)
    if value < 1:
        raise bad_request("before must be a positive stream sequence")
    return value


def _after(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        raise bad_request("after must be a stream sequence (0 or more)")
    return int(raw)


@dataclass(frozen=True)
class Window:
    first_seq: int
    last_seq: int

    @property
    def size(self) -> int:
        return self.last_seq - self.first_seq + 1


def window(state: StreamState | None, query: HistoryQuery) -> Window | None:
    """The sequences `query` asks for in the stream `state` describes; None: no frames."""
    if state is None or state.messages == 0 or state.last_seq == 0:
        return None
    if query.after is not None:
        start = max(state.first_seq, query.after + 1)
        if start > state.last_seq:
            return None
        return Window(start, min(state.last_seq, start + query.limit - 1))
    end = state.last_seq if query.before is None else min(state.last_seq, query.before - 1)
    if end < state.first_seq:
        return None
    return Window(max(state.first_seq, end - query.limit + 1), end)
