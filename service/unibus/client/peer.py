"""The peer API: rooms whose frames are signed, sealed and opened on this side only.

`Peer` wraps the control client for the calls that need keys (create, add, remove,
rotate); `RoomView` is one room as this peer sees it — its members and the room keys it can
open — and publishes over core NATS only, reading back through history or a live
subscription. Every frame read comes out as a `Message` or a `Rejected` with its reason,
so a caller decides what to show rather than losing frames silently.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from nats.aio.client import Client
from nats.aio.subscription import Subscription as NatsSubscription

from ..identity import Identity, InvalidKey, is_public_key
from ..wire.interest import confirm_interest
from ..wire.names import CONTROL_PREFIX
from . import frames, roomkeys
from .connecting import connect
from .control import ControlClient
from .errors import ServiceError
from .follow import Followed, Follower, FollowError, Gap
from .frames import Frame, FrameRejected, Reason


@dataclass(frozen=True)
class Message:
    """A frame whose signature verified, from a member, decrypted."""

    room: str
    sender: str
    ts_ms: int
    id: str
    epoch: int
    data: bytes
    ok: ClassVar[bool] = True

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Rejected:
    """A frame that was not accepted; `sender` is only what the frame claims."""

    room: str
    reason: Reason
    detail: str
    raw: bytes
    sender: str | None = None
    ok: ClassVar[bool] = False


Opened = Message | Rejected


@dataclass(frozen=True)
class HistoryPage:
    messages: list[Opened]
    """Oldest first, as stored."""
    first_seq: int | None
    """Pass as `before` for the next page back; None when nothing is older."""
    last_seq: int | None
    seqs: list[int]
    """Each message's stream sequence, in the same order; empty from a service older
    than the field."""


class Peer:
    def __init__(self, nc: Client, identity: Identity, prefix: str = CONTROL_PREFIX) -> None:
        self.nc = nc
        self.identity = identity
        self.control = ControlClient(nc, identity, prefix)

    async def room(self, room_id: str) -> RoomView:
        room = RoomView(self, room_id)
        await room.refresh()
        return room

    async def create_room(
        self, room_id: str | None = None, *, encrypted: bool = True, mode: str = "matrix", name: str = ""
    ) -> RoomView:
        """Create a room; an encrypted one gets a fresh key sealed to its creator."""
        fields: dict[str, Any] = {"mode": mode, "name": name, "encrypted": encrypted}
        if encrypted:
            fields["sealed_key"] = roomkeys.seal(roomkeys.new_room_key(), self.identity.public_key)
        created = await self.control.create_room(room_id, **fields)
        return await self.room(created["id"])

    async def add_member(self, room_id: str, member: str, role: str = "member") -> dict[str, Any]:
        """Add `member`, sealing the current room key to them (they read from this epoch on)."""
        room = await self.room(room_id)
        if room.encrypted and not is_public_key(member):
            raise InvalidKey(f"{member!r} is not an nkey user public key (U…): no key can be sealed to it")
        sealed = roomkeys.seal(room.current_key(), member) if room.encrypted else None
        return await self.control.add_member(room_id, member, role, sealed)

    async def remove_member(self, room_id: str, member: str) -> dict[str, Any]:
        """Remove `member`; in an encrypted room a new key epoch goes to the others only.

        Leaving on one's own sends no key (the leaver cannot rotate for others); the
        owner should then call `rotate_key`."""
        room = await self.room(room_id)
        if not room.encrypted or member == self.identity.public_key:
            return await self.control.remove_member(room_id, member)
        remaining = room.members - {member}
        return await self.control.remove_member(
            room_id, member, roomkeys.seal_for(roomkeys.new_room_key(), remaining)
        )

    async def rotate_key(self, room_id: str) -> dict[str, Any]:
        room = await self.room(room_id)
        sealed = roomkeys.seal_for(roomkeys.new_room_key(), room.members)
        return await self.control.rotate_key(room_id, sealed)

    @classmethod
    async def connect(
        cls, url: str, identity: Identity, prefix: str = CONTROL_PREFIX, **options: Any
    ) -> Peer:
        """A peer on its own connection, made by `unibus.client.connect` (re-authorizing
        on JWT expiry and on grants, reconnecting for ever)."""
        return cls(await connect(url, identity, **options), identity, prefix)

    async def follow(
        self, room_id: str, after: int | None = None, *, on_status: Callable[[str], object] | None = None
    ) -> AsyncIterator[Followed | Gap]:
        """Every frame the room stores after sequence `after` (None: from now on), opened,
        exactly once and in stream order, for as long as the caller iterates: across
        reconnects, cuts, JWT expiries and NATS restarts. Keep the last `Followed.seq` to
        resume from after a restart. Frames the stream no longer holds come out as a
        `Gap`; removal from the room ends it with `Forbidden` (403). `on_status` hears of
        reconnects and outages, in words."""
        room = await self.room(room_id)
        if room.info.get("stream") is None:
            raise FollowError(f"room {room_id} is ephemeral: it stores nothing to follow")
        async for item in Follower(room, after, on_status).items():
            yield item

    async def publish(self, room_id: str, data: bytes) -> Frame:
        """One message with freshly read keys, flushed: for one-shot senders."""
        room = await self.room(room_id)
        frame = await room.publish(data)
        await self.nc.flush()
        return frame


class RoomView:
    """A room as this peer sees it. State is read by `refresh()`; a long-lived sender
    should refresh after membership changes so it seals under the current epoch."""

    def __init__(self, peer: Peer, room_id: str) -> None:
        self.peer = peer
        self.id = room_id
        self.info: dict[str, Any] = {}
        self.members: set[str] = set()
        self.epoch = 0
        self.keys: dict[int, bytes] = {}
        self._refreshed_for: set[object] = set()

    @property
    def subject(self) -> str:
        return str(self.info["subject"])

    @property
    def encrypted(self) -> bool:
        return bool(self.info.get("encrypted"))

    async def refresh(self) -> None:
        control = self.peer.control
        self.info = await control.info(self.id)
        self.members = {m["id"] for m in (await control.members(self.id))["members"]}
        if self.encrypted:
            sealed = await control.sealed_keys(self.id)
            self.epoch = int(sealed["epoch"])
            self.keys = {**self.keys, **roomkeys.open_keyring(sealed["keys"], self.peer.identity)}

    def current_key(self) -> bytes:
        key = self.keys.get(self.epoch)
        if key is None:
            raise roomkeys.SealedKeyError(f"no room key sealed to this identity for epoch {self.epoch}")
        return key

    async def publish(self, data: bytes) -> Frame:
        """Core NATS publish, no JetStream API: the control plane's stream captures it."""
        now = int(time.time() * 1000)
        if self.encrypted:
            frame = frames.seal_frame(
                self.peer.identity, self.id, data, ts_ms=now, epoch=self.epoch, room_key=self.current_key()
            )
        else:
            frame = frames.seal_frame(self.peer.identity, self.id, data, ts_ms=now)
        await self.peer.nc.publish(self.subject, frame.encode())
        return frame

    async def open(self, raw: bytes) -> Opened:
        frame: Frame | None = None
        try:
            frame = frames.decode(raw)
            frames.verify(frame, self.id)
            sender = frame.sender
            if not await self._knows(sender, lambda: sender in self.members):
                raise FrameRejected(Reason.NOT_MEMBER, f"{sender} is not a member of {self.id}")
            data = await self._body(frame)
        except FrameRejected as exc:
            return Rejected(self.id, exc.reason, exc.detail, raw, frame.sender if frame else None)
        return Message(self.id, frame.sender, frame.ts_ms, frame.id, frame.epoch, data)

    async def _body(self, frame: Frame) -> bytes:
        if not self.encrypted:
            if frame.epoch != 0:
                raise FrameRejected(Reason.CIPHERTEXT_IN_PLAIN_ROOM, f"epoch {frame.epoch}")
            return frame.body
        if frame.epoch == 0:
            raise FrameRejected(Reason.PLAINTEXT_IN_ENCRYPTED_ROOM)
        epoch = frame.epoch
        if not await self._knows(("epoch", epoch), lambda: epoch in self.keys):
            raise FrameRejected(Reason.NO_KEY, f"no key for epoch {frame.epoch} is sealed to this identity")
        return frames.decrypt(frame, self.keys[frame.epoch])

    async def _knows(self, what: object, known: Callable[[], bool]) -> bool:
        """`known()`, after at most one refresh per unknown sender or epoch: a new member
        or a rotation is picked up, while a flood of forged frames costs one request each
        distinct claim, not one per frame."""
        if known():
            return True
        if what in self._refreshed_for:
            return False
        self._refreshed_for.add(what)
        with contextlib.suppress(ServiceError):  # e.g. 403 once removed: keep what we had
            await self.refresh()
        return known()

    async def history(self, limit: int | None = None, before: int | None = None) -> HistoryPage:
        page = await self.peer.control.history(self.id, limit=limit, before=before)
        opened = [await self.open(raw) for raw in page.frames]
        return HistoryPage(opened, page.first_seq, page.last_seq, page.seqs)

    async def backlog(self, page_size: int = 1000) -> AsyncIterator[Opened]:
        """Every stored frame opened, newest first."""
        async for raw in self.peer.control.backlog(self.id, page_size):
            yield await self.open(raw)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[LiveMessages]:
        """Live frames from now on; the interest is registered before this yields."""
        nc = self.peer.nc
        sub = await nc.subscribe(self.subject)
        try:
            await confirm_interest(nc)
            yield LiveMessages(self, sub)
        finally:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await sub.unsubscribe()


class LiveMessages:
    def __init__(self, room: RoomView, sub: NatsSubscription) -> None:
        self._room = room
        self._messages = sub.messages.__aiter__()

    def __aiter__(self) -> LiveMessages:
        return self

    async def __anext__(self) -> Opened:
        msg = await self._messages.__anext__()
        return await self._room.open(msg.data)
