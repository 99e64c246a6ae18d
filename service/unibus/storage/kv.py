"""Room rows in a JetStream KV bucket, shared by every instance of the service.

Each instance keeps a copy of the bucket fed by a KV watch, so membership checks and
`rooms.list` cost no round trip; a miss falls back to a direct get so a room created a
moment ago on another instance is never reported missing. Writes go to the bucket with
compare-and-set, so concurrent creates and membership changes never lose an update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats.js.errors as jserr
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from ..readindex import ReadIndex
from ..wire.jscodes import JSStreamWrongLastSequenceErrF
from ..wire.names import CONTROL_PREFIX, bucket_name
from .base import ConcurrentChange, Mutation, RoomExists, StoreUnavailable
from .copy import RoomCopy
from .rooms import Room

log = logging.getLogger(__name__)

_WATCH_LAG_S = 0.25
"""How long a healthy watch may take to deliver the bucket's last write before it is
taken for cut off and replaced (deliveries normally arrive within a millisecond)."""
_CAS_ATTEMPTS = 32


class KvStore:
    def __init__(self, kv: KeyValue, bucket: str, timeout_s: float, nc: Client | None = None) -> None:
        self._kv = kv
        self._bucket = bucket
        self._index = ReadIndex(nc, timeout_s) if nc is not None else None
        self._timeout = timeout_s
        self._rooms = RoomCopy()
        # Revision of rows this instance deleted, so the watch cannot resurrect them
        # with an older put still in flight.
        self._deleted: dict[str, int] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._watcher: KeyValue.KeyWatcher | None = None
        self._seen = 0
        """Highest bucket revision the current watch has delivered."""
        self._advanced = asyncio.Event()
        self._rewatching = asyncio.Lock()
        self._writers = KeyedLock()
        self._on_loss: list[Callable[[str, frozenset[str]], None]] = []

    def on_membership_loss(self, callback: Callable[[str, frozenset[str]], None]) -> None:
        """Call `callback(room_id, identities)` whenever the copy learns that identities
        lost a room (removed, left, the room deleted): from this instance's own writes and
        from every other instance's, through the watch. The revoker acts on it."""
        self._on_loss.append(callback)

    def _replaced(self, old: Room | None, new: Room | None) -> None:
        if old is None:
            return
        lost = frozenset(old.members) - frozenset(new.members if new else ())
        if lost:
            for callback in self._on_loss:
                callback(old.id, lost)

    @property
    def revision(self) -> int:
        """The watch's position: every write up to it is in the copy."""
        return self._seen

    def cached(self, room_id: str) -> Room | None:
        """The copy's row, without a round trip (None: not in the copy)."""
        return self._rooms.get(room_id)

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        replicas: int,
        timeout_s: float,
        nc: Client | None = None,
        api_prefix: str = CONTROL_PREFIX,
        max_bytes: int = -1,
    ) -> KvStore:
        """Open the prefix's bucket, creating it with `max_bytes` reserved (an existing bucket
        gets its reservation from the caller: operations/reservation.py)."""
        bucket = bucket_name(api_prefix)
        try:
            kv = await js.key_value(bucket)
        except jserr.BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket, history=1, storage=StorageType.FILE, replicas=replicas, max_bytes=max_bytes
                )
            )
        store = cls(kv, bucket, timeout_s, nc)
        await store._start_watch()
        return store

    async def _start_watch(self) -> set[str]:
        """A new watch, once its snapshot is in the copy; the keys the snapshot held (rows
        and delete markers)."""
        held: set[str] = set()
        watcher = await self._kv.watchall()
        # Wait for the initial snapshot (ended by a None marker) before serving reads, each
        # row within the timeout of the one before. One deadline moved along, not nats-py's
        # `updates(timeout)`: that is a wait_for, a task per row, and took more than half
        # of a start's CPU (1.8-2.0 s against 0.8-0.9 s for 20,000 rows, measured).
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._timeout) as quiet:
            async for entry in watcher:
                if entry is None:
                    break
                held.add(entry.key)
                self._apply(entry)
                quiet.reschedule(loop.time() + self._timeout)
            else:
                raise StoreUnavailable("the room bucket's watch stopped before its snapshot ended")
        self._watcher = watcher
        self._watch_task = asyncio.create_task(self._follow(watcher), name="unibus-kv-watch")
        return held

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is not None:
                self._apply(entry)

    async def catch_up(self) -> None:
        """Until the copy holds every write the bucket holds, for decisions that must not
        come from a copy that lags behind (the auth callout's grants).

        One round trip compares the watch's position with the bucket's last revision. A
        watch that does not get there quickly was cut off, typically by a NATS restart,
        which nats-py notices only after two missed heartbeats (about 10 s): it is
        replaced at once by a new watch, whose snapshot brings the copy up to date."""
        try:
            last = await self._last_revision()
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable("room storage unavailable, try again") from exc
        deadline = asyncio.get_running_loop().time() + _WATCH_LAG_S
        while self._seen < last:
            self._advanced.clear()
            try:
                await asyncio.wait_for(self._advanced.wait(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                try:
                    await self._rewatch(last)
                except Exception as exc:
                    # No fresh copy to decide from (JetStream electing a leader, say):
                    # fail closed and retryable rather than answer from a stale one.
                    log.warning("room bucket watch not replaced: %r", exc)
                    raise StoreUnavailable("room storage unavailable, try again") from exc
                return

    async def _last_revision(self) -> int:
        """The bucket's last revision from a raw STREAM.INFO, shared by the decisions that
        arrived before it was sent (readindex.py): this runs before every membership
        decision, and nats-py's full StreamInfo decoding would cost more than the round
        trip."""
        if self._index is None:
            status = await asyncio.wait_for(self._kv.status(), self._timeout)
            return int(status.stream_info.state.last_seq)
        return int((await self._bucket_info())["state"]["last_seq"])

    async def fill(self) -> float | None:
        """The bucket's bytes against its reservation (quotas.py keeps headroom for
        existing rooms' changes); None for a bucket without `max_bytes`."""
        if self._index is None:
            status = await asyncio.wait_for(self._kv.status(), self._timeout)
            used, limit = status.stream_info.state.bytes, status.stream_info.config.max_bytes or -1
        else:
            info = await self._bucket_info()
            used, limit = info["state"]["bytes"], info["config"].get("max_bytes", -1)
        return int(used) / int(limit) if int(limit) > 0 else None

    async def _bucket_info(self) -> dict[str, Any]:
        """One raw STREAM.INFO of the bucket's stream."""
        assert self._index is not None
        try:
            info = await self._index.stream_info(f"KV_{self._bucket}")
        except jserr.APIError:
            raise StoreUnavailable("room bucket unavailable") from None
        return info

    async def _rewatch(self, last: int) -> None:
        async with self._rewatching:  # one replacement however many callers noticed
            if self._seen >= last:
                return
            log.warning("room bucket watch at revision %d of %d: replacing it", self._seen, last)
            subjects = None
            if self._index is not None:  # the keys the replacement's snapshot must hold at least
                subjects = (await self._bucket_info())["state"].get("num_subjects")
            await self._stop_watch()
            self._seen = 0
            held = await self._start_watch()
            self._drop_absent(held, last, subjects)

    def _drop_absent(self, held: set[str], last: int, subjects: int | None) -> None:
        """Rows a replacement's snapshot does not hold, though written no later than `last`
        (the bucket's revision before it began): removed while the old watch was cut in a
        way no watch delivers (an operator purging delete markers or a key's messages).
        Keeping them would keep granting a deleted room's members. Trusted only when the
        snapshot held at least the `subjects` the bucket had before it began: one that
        ended early must not drop rows that exist (each drop revokes its members)."""
        if subjects is None or len(held) < subjects:
            if subjects is not None:
                log.warning("room bucket snapshot of %d of %d keys: nothing dropped", len(held), subjects)
            return
        for key, room in self._rooms.rows():
            if key not in held and room.revision <= last:
                log.warning("room %s left the bucket without a delete the watch could see: dropped", key)
                self._replaced(self._rooms.pop(key), None)

    async def _stop_watch(self) -> None:
        # Bounded: shutting down must not hang on a watch stuck inside nats-py.
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.wait({self._watch_task}, timeout=self._timeout)
            self._watch_task = None
        if self._watcher is not None:
            with contextlib.suppress(Exception):  # its subscription may be gone with NATS
                await asyncio.wait_for(self._watcher.stop(), self._timeout)  # type: ignore[no-untyped-call]
            self._watcher = None

    def _apply(self, entry: KeyValue.Entry) -> None:
        revision = entry.revision or 0
        self._seen = max(self._seen, revision)
        self._advanced.set()
        known = self._rooms.get(entry.key)
        if known is not None and known.revision >= revision:
            return
        if self._deleted.get(entry.key, 0) >= revision:
            return
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            self._replaced(self._rooms.pop(entry.key), None)
            # The watch has reached the deletion: older puts are behind it, the guard can go.
            self._deleted.pop(entry.key, None)
            return
        try:
            room = Room.from_json(entry.value, revision)
        except (ValueError, TypeError):
            log.error("unreadable room row %s at revision %s left untouched", entry.key, revision)
            return
        self._rooms.put(entry.key, room)
        self._replaced(known, room)

    async def get(self, room_id: str) -> Room | None:
        room = self._rooms.get(room_id)
        if room is not None:
            return room
        return await self._fetch(room_id)

    async def _fetch(self, room_id: str) -> Room | None:
        try:
            entry = await asyncio.wait_for(self._kv.get(room_id), self._timeout)
        except (jserr.KeyNotFoundError, jserr.KeyDeletedError):
            return None
        if entry.value is None:
            return None
        room = Room.from_json(entry.value, entry.revision or 0)
        self._remember(room)
        return room

    async def create(self, room: Room) -> Room:
        try:
            revision = await asyncio.wait_for(self._kv.create(room.id, room.to_json()), self._timeout)
        except (jserr.KeyWrongLastSequenceError, jserr.KeyNotFoundError):
            # nats-py re-reads the key after "wrong last sequence"; on a replica that has not
            # yet applied the winner's write the re-read finds nothing. Either way we lost.
            raise RoomExists(room.id) from None
        stored = room.with_revision(revision)
        self._remember(stored)
        return stored

    async def update(self, room_id: str, mutate: Mutation) -> Room | None:
        # Writers on this instance queue per room, so compare-and-set only ever races
        # against other instances; those races are retried with a little jitter.
        async with self._writers.hold(room_id):
            return await self._update(room_id, mutate)

    async def _update(self, room_id: str, mutate: Mutation) -> Room | None:
        for attempt in range(_CAS_ATTEMPTS):
            if attempt:
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))
            current = await self._fetch(room_id)
            if current is None:
                return None
            changed = mutate(current)
            try:
                revision = await asyncio.wait_for(
                    self._kv.update(room_id, changed.to_json(), last=current.revision), self._timeout
                )
            except jserr.KeyWrongLastSequenceError:
                continue  # someone else wrote in between: re-read and re-apply
            stored = changed.with_revision(revision)
            self._remember(stored)
            return stored
        raise ConcurrentChange("the room is being changed concurrently; try again")

    async def delete(self, room_id: str) -> bool:
        current = await self._fetch(room_id)
        if current is None:
            return False
        # The row as stored now, not as this instance's watch last saw it: a newer instance
        # may have just rewritten it, and only a compare-and-set delete keeps that rewrite.
        current.check_writable()
        try:
            await asyncio.wait_for(self._kv.delete(room_id, last=current.revision), self._timeout)
        except jserr.APIError as err:
            if err.err_code != JSStreamWrongLastSequenceErrF:
                raise
            raise ConcurrentChange("the room is being changed concurrently; try again") from None
        self._replaced(self._rooms.pop(room_id) or current, None)
        self._deleted[room_id] = current.revision
        return True

    async def rooms_of(self, member: str | None) -> list[Room]:
        return self._rooms.rooms_of(member)

    async def close(self) -> None:
        await self._stop_watch()

    def _remember(self, room: Room) -> None:
        known = self._rooms.get(room.id)
        self._deleted.pop(room.id, None)
        if known is None or known.revision < room.revision:
            self._rooms.put(room.id, room)
            self._replaced(known, room)


class KeyedLock:
    """One asyncio.Lock per key, dropped again when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
