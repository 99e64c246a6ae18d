"""Reading a room's backlog: the query, the window of sequences, the reader and the envelope.

The window is a range of stream sequences, the last `limit` up to the end (the stream's
last message, or just before `before`). Deleted or purged sequences inside it are
skipped, so a page may hold fewer than `limit` frames; `first_seq` is where the next
page back starts (`before=first_seq`). A reply without `first_seq` means nothing older.

Frames are relayed as stored: the server never decrypts and never re-encodes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from binascii import b2a_base64
from dataclasses import dataclass
from urllib.parse import parse_qsl

import msgpack
from nats.aio.client import Client
from nats.aio.msg import Msg

from .errors import bad_request
from .streams import StreamState

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
MSGPACK = "application/msgpack"


@dataclass(frozen=True)
class HistoryQuery:
    limit: int = DEFAULT_LIMIT
    before: int | None = None


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
    return HistoryQuery(limit=_limit(params.get("limit")), before=_before(params.get("before")))


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
    end = state.last_seq if query.before is None else min(state.last_seq, query.before - 1)
    if end < state.first_seq:
        return None
    return Window(max(state.first_seq, end - query.limit + 1), end)


@dataclass(frozen=True)
class History:
    frames: list[bytes]
    window: Window | None

    def to_json(self) -> bytes:
        # Standard base64 never needs JSON escaping, so the list is joined as bytes.
        messages = b'","'.join(b2a_base64(frame, newline=False) for frame in self.frames)
        head = b'{"messages":["' + messages + b'"]' if self.frames else b'{"messages":[]'
        if self.window is None:
            return head + b"}"
        return head + b',"first_seq":%d,"last_seq":%d}' % (self.window.first_seq, self.window.last_seq)

    def to_msgpack(self) -> bytes:
        envelope: dict[str, object] = {"messages": self.frames}
        if self.window is not None:
            envelope["first_seq"] = self.window.first_seq
            envelope["last_seq"] = self.window.last_seq
        return bytes(msgpack.packb(envelope, use_bin_type=True))

    def encode(self, accept: str | None) -> tuple[bytes, dict[str, str]]:
        if accept is not None and MSGPACK in accept:
            return self.to_msgpack(), {"Content-Type": MSGPACK}
        return self.to_json(), {"Content-Type": "application/json"}


EMPTY = History([], None)


async def read_window(nc: Client, stream: str, win: Window, timeout_s: float) -> list[bytes]:
    """Stream the frames of `win` from a short-lived push consumer, in one flow.

    Creating the consumer starts the delivery, so the whole read is one round trip. The
    consumer is ephemeral, in memory and single-replica, and it is never acknowledged:
    `max_ack_pending` equal to the window size makes the server stop after the window,
    so a page deep in a long stream costs no more than the page. It touches no peer's
    consumer or ack floor, and is deleted as soon as the window is read (the server
    reaps it after `inactive_threshold` should this process die mid-read)."""
    inbox = nc.new_inbox()
    frames: list[bytes] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        if done.done() or not msg.reply:
            return
        seq, pending = _position(msg.reply)
        if seq <= win.last_seq:
            frames.append(msg.data)
        if seq >= win.last_seq or pending == 0:
            done.set_result(None)

    sub = await nc.subscribe(inbox, cb=on_message)
    name = None
    try:
        name, pending = await _create_consumer(nc, stream, inbox, win, timeout_s)
        if pending == 0:  # nothing stored at or after the window's start (all gaps)
            return []
        await asyncio.wait_for(done, timeout_s)
    finally:
        await sub.unsubscribe()
        if name is not None:
            # Best effort, not awaited: inactive_threshold is the backstop.
            with contextlib.suppress(Exception):
                await nc.publish(f"$JS.API.CONSUMER.DELETE.{stream}.{name}", b"")
    return frames


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
            "inactive_threshold": 10_000_000_000,
        },
    }
    reply = await nc.request(
        f"$JS.API.CONSUMER.CREATE.{stream}", json.dumps(request).encode(), timeout=timeout_s
    )
    answer = json.loads(reply.data)
    if "error" in answer:
        raise RuntimeError(f"consumer create on {stream}: {answer['error']}")
    return str(answer["name"]), int(answer.get("num_pending", 1))


def _position(reply: str) -> tuple[int, int]:
    """(stream sequence, messages pending after it) from a `$JS.ACK` reply subject
    (v1: 9 tokens; v2 adds domain and account hash in front and a token at the end)."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[8])
    return int(tokens[7]), int(tokens[10])
