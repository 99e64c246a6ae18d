"""The reply to a history request: a page of frames, where it lies in the stream, and its
encoding (JSON or msgpack, as the caller accepts).

A page is bounded in bytes: it must fit in one NATS message in the encoding asked for
(base64 makes JSON 4/3 as large). Frames are cut from the old end and `first_seq` moves
up to the oldest frame kept, so paging with `before` still returns every frame exactly
once; with `after` they are cut from the new end and `last_seq` moves down to the newest
frame kept, so paging with `after=last_seq` does the same forwards. A room stream never
stores a frame too large for a page on its own (`streams.largest_frame`, from the same
`PAGE_OVERHEAD`), so every page holds at least one.

Frames are relayed as stored: the server never decrypts and never re-encodes them.
"""

from __future__ import annotations

from binascii import b2a_base64
from dataclasses import dataclass, field, replace

import msgpack

from ..streams import PAGE_OVERHEAD
from .query import Window
from .state import StreamState

MSGPACK = "application/msgpack"

_SEQ_JSON = 21
"""A sequence in a JSON reply: up to 20 digits and a comma."""
_SEQ_MSGPACK = 9
"""A sequence in a msgpack reply: a uint64 at most."""


@dataclass(frozen=True)
class PageBudget:
    """How many bytes of frames one reply may carry, counted in its encoding."""

    max_bytes: int
    binary: bool
    """msgpack carries a frame as it is; JSON as quoted base64 with a comma."""

    @classmethod
    def for_reply(cls, max_payload: int, accept: str | None) -> PageBudget:
        return cls(max_payload - PAGE_OVERHEAD, accept is not None and MSGPACK in accept)

    def cost(self, frame: bytes) -> int:
        """A frame's bytes in the reply, its entry in `seqs` counted at its widest."""
        if self.binary:
            return len(frame) + 5 + _SEQ_MSGPACK
        return 4 * ((len(frame) + 2) // 3) + 3 + _SEQ_JSON


@dataclass(frozen=True)
class HistoryReply:
    """One page of a room's backlog as the reply carries it (the peer library reads it
    back as `client.FramePage`)."""

    frames: list[bytes]
    window: Window | None
    seqs: list[int]
    """Each frame's stream sequence: a page is a window of the stream, not a run of it
    (deleted and expired frames leave gaps), so a peer that wants to name a frame (to
    quote it, or to resume after it) reads its sequence here."""
    stream_last_seq: int | None = None
    """The stream's last sequence when the page was read (0: no stream), sent in the
    replies to `after` only: a follower is caught up once its cursor reaches it."""
    _encoded: dict[bool, bytes] = field(default_factory=dict, init=False, compare=False, repr=False)
    """The page as encoded, per encoding (msgpack: True), made once: a page the frame cache
    keeps is sent again as it was (cache.py)."""

    def with_stream_last(self, state: StreamState | None) -> HistoryReply:
        return replace(self, stream_last_seq=state.last_seq if state is not None else 0)

    def to_json(self) -> bytes:
        # Standard base64 never needs JSON escaping, so the list is joined as bytes.
        messages = b'","'.join(b2a_base64(frame, newline=False) for frame in self.frames)
        head = b'{"messages":["' + messages + b'"]' if self.frames else b'{"messages":[]'
        if self.window is not None:
            seqs = ",".join(map(str, self.seqs)).encode()
            head += b',"first_seq":%d,"last_seq":%d,"seqs":[%s]' % (
                self.window.first_seq,
                self.window.last_seq,
                seqs,
            )
        if self.stream_last_seq is not None:
            head += b',"stream_last_seq":%d' % self.stream_last_seq
        return head + b"}"

    def to_msgpack(self) -> bytes:
        envelope: dict[str, object] = {"messages": self.frames}
        if self.window is not None:
            envelope["first_seq"] = self.window.first_seq
            envelope["last_seq"] = self.window.last_seq
            envelope["seqs"] = self.seqs
        if self.stream_last_seq is not None:
            envelope["stream_last_seq"] = self.stream_last_seq
        return bytes(msgpack.packb(envelope, use_bin_type=True))

    def encode(self, accept: str | None) -> tuple[bytes, dict[str, str]]:
        binary = accept is not None and MSGPACK in accept
        body = self._encoded.get(binary)
        if body is None:
            body = self._encoded[binary] = self.to_msgpack() if binary else self.to_json()
        return body, {"Content-Type": MSGPACK if binary else "application/json"}


EMPTY = HistoryReply([], None, [])
