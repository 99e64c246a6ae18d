"""Following a room: every stored frame exactly once, in stream order, whatever happens to
the connection (docs/protocol.md, "Following a room").

Live frames come from the room's stored subject, where nats-server republishes each frame
the stream stores with its sequence; history (`after=<cursor>`) fills whatever did not
arrive live. The cursor is the sequence of the last frame handed on, so:
- a live frame at `cursor + 1` is the next one;
- one at or below the cursor was already handed on (read through history first, or sent
  twice by a cluster changing leaders): dropped;
- one above `cursor + 1` means frames were missed: history from the cursor first;
- after a reconnect, history from the cursor: frames stored while away never come live.
Frames the stream no longer holds are reported as a `Gap`, never skipped in silence.

A reconnect is seen by polling the connection's reconnect count rather than through
nats-py's `reconnected_cb`: the connection has one such callback and it belongs to
whoever made the connection, while any number of followers may share it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg

from ..identity import notice_subject
from ..wire.interest import confirm_interest
from ..wire.names import stored_subject
from . import notices
from .control import FramePage
from .errors import Unavailable

if TYPE_CHECKING:
    from .peer import Opened, RoomView

STAMP = "Nats-Sequence"
"""The header nats-server stamps a republished frame with: its stream sequence."""

END = 2**64 - 1
"""`after` no stream reaches: the reply is empty and names where the stream ends."""

PAGE = 1000
"""Frames per catch-up read (the service's cap)."""

POLL_S = 0.25
"""How often an idle follower looks for a reconnect it has not caught up after."""

SETTLE_S = 1.0
"""After catching up on a reconnect, one more read this much later: in a cluster the
subscription may reach the stream's leader after the read did, and a frame stored in
between would otherwise wait for the next frame to be noticed."""

AHEAD_S = 30.0
"""How long history is read again for a live copy's sequence it did not reach. nats-server
republishes a frame once its stream stored it, so history soon reaches a stamp that is
the server's (a clustered stream's new leader may answer behind for a moment); a stamp
it never reaches is not the server's (docs/protocol.md, "Forged headers")."""

AHEAD_PAUSE_S = (0.1, 1.0)
"""The first and the longest pause between those reads."""

LIVE_COPIES, LIVE_BYTES = 4096, 64 * 2**20
"""Live copies held while the caller or a history read is busy, by count and by bytes
(Go's follower holds 4,096). Past either, copies are dropped and history is read for
them instead: a room's flood costs its followers a read, never unbounded memory."""

OVERFLOWED = "overflowed"
"""The mailbox's mark that copies were dropped: history has them."""


@dataclass(frozen=True)
class Followed:
    """A stored frame, opened, with its stream sequence (the cursor to resume after)."""

    seq: int
    message: Opened


@dataclass(frozen=True)
class Gap:
    """Sequences `first`..`last` were stored and are no longer (the room's byte limit
    dropped them, or an operator purged them): they will never be delivered."""

    first: int
    last: int


Item = Followed | Gap


class FollowError(Exception):
    """Following cannot go on without losing frames silently."""


def stamped_sequence(msg: Msg) -> int | None:
    """The stream sequence nats-server stamped on a stored-subject message, or None.

    A publisher's own `Nats-Sequence` header is stored and republished along with the
    frame, and the server appends its value after it: nats-py keeps the last value of a
    repeated header, which is the server's (docs/protocol.md, "Forged headers")."""
    value = (msg.headers or {}).get(STAMP, "")
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 20 else None


@dataclass
class Ahead:
    """The highest sequence seen live that history had not reached when it was read, and
    when to read history again for it. Reading again never holds up what comes live, and a
    stamp history never reaches is only ever dropped: a member may forge one that some
    clients read as the server's, so it must cost nothing but those reads."""

    stamp: int = 0
    since: float = 0.0
    next_at: float | None = None
    pause: float = AHEAD_PAUSE_S[0]

    def saw(self, stamp: int, now: float) -> None:
        if stamp > self.stamp:
            if self.next_at is None:
                self.since, self.pause = now, AHEAD_PAUSE_S[0]
                self.next_at = now + self.pause
            self.stamp = stamp

    def due(self, now: float) -> bool:
        return self.next_at is not None and now >= self.next_at

    def read(self, cursor: int, now: float) -> str | None:
        """After a catch-up to `cursor`: what to tell the application, if anything."""
        if self.next_at is None:
            return None
        if cursor >= self.stamp:
            self.next_at = None
            return None
        if now - self.since >= AHEAD_S:
            stamp, self.stamp, self.next_at = self.stamp, 0, None
            return (
                f"dropped a live copy stamped {stamp}, which history did not reach in {AHEAD_S:.0f} s"
                " (not the server's stamp, or the stream was made again)"
            )
        self.pause = min(self.pause * 2, AHEAD_PAUSE_S[1])
        self.next_at = now + self.pause
        return f"behind sequence {self.stamp} seen live; reading again in {self.pause:.1f} s"


class Follower:
    """One room followed on one connection; `cursor` is the last sequence handed on."""

    def __init__(self, room: RoomView, cursor: int | None, on_status: Callable[[str], object] | None) -> None:
        self.room = room
        self.cursor = cursor
        self.on_status = on_status or (lambda _: None)
        self._live: asyncio.Queue[tuple[int | None, bytes] | str] = asyncio.Queue()
        self._held_copies = self._held_bytes = 0  # in _live
        self._dropped = 0
        self._ahead = Ahead()

    async def items(self) -> AsyncIterator[Item]:
        nc = self.room.peer.nc
        subscriptions = [
            await nc.subscribe(stored_subject(self.room.subject), cb=self._on_stored),
            await nc.subscribe(notice_subject(self.room.peer.identity.public_key), cb=self._on_notice),
        ]
        try:
            # The server holds the subscription before the first read: whatever is stored
            # after that read arrives live.
            await confirm_interest(nc)
            reconnects = nc.stats["reconnects"]
            if self.cursor is None:
                self.cursor = (await self._page(END)).stream_last_seq or 0
            self.on_status(f"listening on {stored_subject(self.room.subject)} after sequence {self.cursor}")
            async for item in self._catch_up():
                yield item
            settle_at: float | None = None
            loop = asyncio.get_running_loop()
            while True:
                try:
                    event = await asyncio.wait_for(self._live.get(), POLL_S)
                except TimeoutError:
                    event = None
                if event == notices.REVOKED:
                    # Removed, or a forged notice: the control plane says which (403 ends it).
                    async for item in self._catch_up():
                        yield item
                elif event == OVERFLOWED:
                    dropped, self._dropped = self._dropped, 0
                    self.on_status(f"{dropped} live copies dropped while busy: reading them from history")
                    async for item in self._catch_up():
                        yield item
                elif isinstance(event, tuple):
                    self._held_copies -= 1
                    self._held_bytes -= len(event[1])
                    async for item in self._on_frame(*event):
                        yield item
                if nc.is_closed:  # closed by its owner, or given up on: nothing more will come
                    raise nats.errors.ConnectionClosedError
                if nc.stats["reconnects"] != reconnects and nc.is_connected:
                    reconnects = nc.stats["reconnects"]
                    self.on_status(f"reconnected: catching up {self.room.id} after sequence {self.cursor}")
                    async for item in self._catch_up():
                        yield item
                    settle_at = loop.time() + SETTLE_S
                elif settle_at is not None and loop.time() >= settle_at:
                    settle_at = None
                    async for item in self._catch_up():
                        yield item
                elif self._ahead.due(loop.time()):
                    async for item in self._catch_up():
                        yield item
        finally:
            for subscription in subscriptions:
                with contextlib.suppress(Exception):  # the connection may be closed already
                    await subscription.unsubscribe()

    async def _on_stored(self, msg: Msg) -> None:
        if self._held_copies >= LIVE_COPIES or self._held_bytes + len(msg.data) > LIVE_BYTES:
            if not self._dropped:
                self._live.put_nowait(OVERFLOWED)  # once per overflow: read after what is held
            self._dropped += 1
            return
        self._held_copies += 1
        self._held_bytes += len(msg.data)
        self._live.put_nowait((stamped_sequence(msg), msg.data))

    async def _on_notice(self, msg: Msg) -> None:
        notice = notices.parse(msg.data)
        if notice is not None and notice.event == notices.REVOKED and notice.room == self.room.id:
            self._live.put_nowait(notices.REVOKED)

    async def _on_frame(self, seq: int | None, data: bytes) -> AsyncIterator[Item]:
        assert self.cursor is not None
        if seq is not None and seq <= self.cursor:
            return  # handed on already
        if seq == self.cursor + 1:
            self.cursor = seq
            yield Followed(seq, await self.room.open(data))
            return
        # Frames missed before this one (or a sequence we cannot read): history has them,
        # this one included. The live copy is dropped either way: history is the authority
        # on what was stored, and what it does not hold yet is looked for again (`Ahead`).
        async for item in self._catch_up():
            yield item
        if seq is not None and seq > self.cursor:
            self._ahead.saw(seq, asyncio.get_running_loop().time())

    async def _catch_up(self) -> AsyncIterator[Item]:
        """History after the cursor until the stream's end, page by page; what the stream
        no longer holds comes out as a `Gap`. Only history says what is gone, never a
        live copy's sequence."""
        while True:
            assert self.cursor is not None
            page = await self._page(self.cursor)
            end = page.stream_last_seq
            assert end is not None
            if end < self.cursor:
                raise FollowError(
                    f"room {self.room.id}'s stream ends at sequence {end}, below this follower's"
                    f" cursor {self.cursor}: it is not the stream the cursor was taken from"
                    " (the room was deleted and made again, or JetStream was restored)"
                )
            for seq, raw in zip(page.seqs, page.frames, strict=True):
                if seq > self.cursor + 1:
                    yield Gap(self.cursor + 1, seq - 1)
                self.cursor = seq
                yield Followed(seq, await self.room.open(raw))
            window_end = page.last_seq if page.last_seq is not None else end
            if window_end > self.cursor:  # the window's last sequences are gone
                yield Gap(self.cursor + 1, window_end)
                self.cursor = window_end
            if self.cursor < end:
                continue
            note = self._ahead.read(self.cursor, asyncio.get_running_loop().time())
            if note:
                self.on_status(f"history of {self.room.id} ends at {end}: {note}")
            return

    async def _page(self, after: int) -> FramePage:
        """One `after` read, retried while the control plane or NATS is away: a follower
        waits out an outage. A refusal (403 once removed) ends it."""
        delay = 0.1
        while True:
            try:
                page = await self.room.peer.control.history(self.room.id, limit=PAGE, after=after)
            except (Unavailable, nats.errors.TimeoutError) as exc:
                self.on_status(
                    f"history of {self.room.id} unavailable ({exc or type(exc).__name__}); retrying"
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if page.stream_last_seq is None:
                raise FollowError("the control plane is older than history `after`: it cannot be followed")
            return page
