"""Reading a room's backlog: the query, the window of sequences, the reader and the envelope.

The window is a range of stream sequences, the last `limit` up to the end (the stream's
last message, or just before `before`). Deleted or purged sequences inside it are
skipped, so a page may hold fewer than `limit` frames; `first_seq` is where the next
page back starts (`before=first_seq`). A reply without `first_seq` means nothing older.

With `after` the window runs the other way, for a follower catching up: the first
`limit` sequences after `after`, and the reply names the stream's last sequence
(`stream_last_seq`), so the follower knows whether it has caught up and which
sequences it will never get (docs/protocol.md, "Following a room").

A page is also bounded in bytes: it must fit in one NATS message in the encoding asked
for (base64 makes JSON 4/3 as large). Frames are cut from the old end and `first_seq`
moves up to the oldest frame kept, so paging with `before` still returns every frame
exactly once; with `after` they are cut from the new end and `last_seq` moves down to
the newest frame kept, so paging with `after=last_seq` does the same forwards. A room
stream never stores a frame too large for a page on its own (`streams.largest_frame`),
so every page holds at least one.

Frames are relayed as stored: the server never decrypts and never re-encodes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from binascii import b2a_base64
from collections import deque
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl

import msgpack
from nats.aio.client import Client
from nats.aio.msg import Msg

from .errors import bad_request
from .streams import PAGE_OVERHEAD, StreamState
from .wire import jsapi

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
MSGPACK = "application/msgpack"


@dataclass(frozen=True)
class HistoryQuery:
    limit: int = DEFAULT_LIMIT
    before: int | None = None
    after: int | None = None
    """Frames stored at sequences above this one, oldest first (a follower's cursor)."""


def parse_query(body: bytes) -> HistoryQuery:
    """The request body is a URL query string, the same bytes the HTTP shim relays.

    `limit` is forgiving, as in the original endpoint: absent, malformed or <= 0 gives the
    default, above the cap gives the cap. `before` names a sequence, so a malformed one is
    an error rather than a silent jump to the newest page."""
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
class History:
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
    keeps is sent again as it was (framecache.py)."""

    def with_stream_last(self, state: StreamState | None) -> History:
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


EMPTY = History([], None, [])


@dataclass(frozen=True)
class WindowRead:
    """The newest frames of a window that fit a page (a forward read: the oldest), each
    with its sequence."""

    frames: list[tuple[int, bytes]]
    window: Window
    """The window narrowed to what was kept: it starts at the oldest frame kept when
    frames were cut for the budget (a forward read: it ends at the newest kept)."""
    cut: tuple[int, bytes] | None = None
    """The newest frame cut for the budget, if any: with it, the cache knows that a page
    of this window ends where this one did (framecache.py). A forward read: the first
    frame past the budget, which only says that the page was cut."""
    last_ts: int = 0
    """When the window's last frame was stored (ns since the epoch), 0 if it was not read:
    the cache checks it against the stream state's `last_ts`, so fetched frames are known
    to come from the stream the state described, not from one made since."""

    @property
    def page(self) -> History:
        return History([frame for _, frame in self.frames], self.window, [seq for seq, _ in self.frames])


async def read_window(
    nc: Client, stream: str, win: Window, timeout_s: float, budget: PageBudget, *, forward: bool = False
) -> WindowRead:
    """Stream the frames of `win` from a short-lived push consumer, in one flow, keeping
    the newest that fit `budget` (with `forward`, the oldest: a page of `after`, which
    then stops reading at the first frame that does not fit).

    Creating the consumer starts the delivery, so the whole read is one round trip. The
    consumer is ephemeral, in memory and single-replica, and it is never acknowledged:
    `max_ack_pending` equal to the window size makes the server stop after the window,
    so a page deep in a long stream costs no more than the page. Flow control paces the
    delivery to what this connection reads, so no window, however large its frames, can
    make the service a slow consumer; frames beyond the budget are dropped as they come,
    so memory stays within one page. It touches no peer's consumer or ack floor, and is
    deleted as soon as the window is read (the server reaps it after
    `inactive_threshold` should this process die mid-read)."""
    inbox = nc.new_inbox()
    kept: deque[tuple[int, bytes]] = deque()
    held = last_ts = 0
    cut: tuple[int, bytes] | None = None
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        nonlocal held, cut, last_ts
        if done.done() or not msg.reply:
            return
        if not msg.reply.startswith("$JS.ACK."):  # flow control: answering lets more come
            await nc.publish(msg.reply, b"")
            return
        seq, stored_ns, pending = _position(msg.reply)
        if seq == win.last_seq:
            last_ts = stored_ns
        if forward and seq <= win.last_seq and kept and held + budget.cost(msg.data) > budget.max_bytes:
            cut = (seq, msg.data)
            done.set_result(None)
            return
        if seq <= win.last_seq:
            kept.append((seq, msg.data))
            held += budget.cost(msg.data)
            while held > budget.max_bytes and len(kept) > 1:
                cut = kept.popleft()
                held -= budget.cost(cut[1])
        if seq >= win.last_seq or pending == 0:
            done.set_result(None)

    sub = await nc.subscribe(inbox, cb=on_message)
    name = None
    try:
        name, pending = await _create_consumer(nc, stream, inbox, win, timeout_s)
        if pending == 0:  # nothing stored at or after the window's start (all gaps)
            return WindowRead([], win)
        await asyncio.wait_for(done, timeout_s)
    finally:
        await sub.unsubscribe()
        if name is not None:
            # Best effort, not awaited: inactive_threshold is the backstop.
            with contextlib.suppress(Exception):
                await nc.publish(f"{jsapi.API_PREFIX}.CONSUMER.DELETE.{stream}.{name}", b"")
    if cut is not None:
        win = Window(win.first_seq, kept[-1][0]) if forward else Window(kept[0][0], win.last_seq)
    return WindowRead(list(kept), win, cut, last_ts)


async def _create_consumer(
    nc: Client, stream: str, inbox: str, win: Window, timeout_s: float
) -> tuple[str, int]:
    request = {
        "stream_name": stream,
        "config": {
            "deliver_subject": inbox,
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": win.first_seq,
            "ack_policy": "explicit",
            "max_ack_pending": win.size,
            "ack_wait": 30_000_000_000,
            "max_deliver": 1,
            "replay_policy": "instant",
            "mem_storage": True,
            "num_replicas": 1,
            "flow_control": True,
            "idle_heartbeat": 5_000_000_000,
            "inactive_threshold": 10_000_000_000,
        },
    }
    answer = await jsapi.request(nc, f"CONSUMER.CREATE.{stream}", request, timeout_s)
    return str(answer["name"]), int(answer.get("num_pending", 1))


def _position(reply: str) -> tuple[int, int, int]:
    """(stream sequence, when stored in ns, messages pending after it) from a `$JS.ACK`
    reply subject (v1: 9 tokens; v2 adds domain and account hash in front and a token at
    the end)."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[7]), int(tokens[8])
    return int(tokens[7]), int(tokens[9]), int(tokens[10])
