"""Room rows in a local SQLite file, for a NATS without JetStream (one instance only)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from .base import Mutation, RoomExists
from .rooms import Room


def open_database(path: str | Path) -> sqlite3.Connection:
    """A SQLite file in autocommit mode, every commit on disk before it returns (WAL,
    synchronous FULL): what the fallback's rows and its replay guard both need."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


ALWAYS_CURRENT = 2**62


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self._db = open_database(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rooms"
            " (id TEXT PRIMARY KEY, revision INTEGER NOT NULL, row BLOB NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS members (member TEXT, room TEXT, PRIMARY KEY (member, room))"
        )
        # One writer at a time keeps read-modify-write updates atomic without retries.
        self._lock = asyncio.Lock()
        self._on_loss: list[Callable[[str, frozenset[str]], None]] = []

    revision = ALWAYS_CURRENT
    """Row revisions here count per room, not per store; the database is the only copy,
    so whatever it answers reflects every write."""

    def cached(self, room_id: str) -> Room | None:
        found = self._db.execute("SELECT revision, row FROM rooms WHERE id = ?", (room_id,)).fetchone()
        return Room.from_json(found[1], found[0]) if found else None

    def on_membership_loss(self, callback: Callable[[str, frozenset[str]], None]) -> None:
        self._on_loss.append(callback)

    def _lost(self, old: Room, new: Room | None) -> None:
        lost = frozenset(old.members) - frozenset(new.members if new else ())
        if lost:
            for callback in self._on_loss:
                callback(old.id, lost)

    async def get(self, room_id: str) -> Room | None:
        return self.cached(room_id)

    async def catch_up(self) -> None:
        """The database is the only copy: always caught up."""

    async def create(self, room: Room) -> Room:
        async with self._lock:
            try:
                with self._transaction():
                    self._db.execute("INSERT INTO rooms VALUES (?, 1, ?)", (room.id, room.to_json()))
                    self._index(room)
            except sqlite3.IntegrityError:
                raise RoomExists(room.id) from None
            return room.with_revision(1)

    async def update(self, room_id: str, mutate: Mutation) -> Room | None:
        async with self._lock:
            current = await self.get(room_id)
            if current is None:
                return None
            changed = mutate(current).with_revision(current.revision + 1)
            with self._transaction():
                self._db.execute(
                    "UPDATE rooms SET revision = ?, row = ? WHERE id = ?",
                    (changed.revision, changed.to_json(), room_id),
                )
                self._db.execute("DELETE FROM members WHERE room = ?", (room_id,))
                self._index(changed)
            self._lost(current, changed)
            return changed

    async def delete(self, room_id: str) -> bool:
        async with self._lock:
            current = self.cached(room_id)
            with self._transaction():
                gone = self._db.execute("DELETE FROM rooms WHERE id = ?", (room_id,)).rowcount
                self._db.execute("DELETE FROM members WHERE room = ?", (room_id,))
            if current is not None:
                self._lost(current, None)
            return bool(gone)

    async def rooms_of(self, member: str | None) -> list[Room]:
        if member is None:
            rows = self._db.execute("SELECT revision, row FROM rooms ORDER BY id").fetchall()
        else:
            rows = self._db.execute(
                "SELECT r.revision, r.row FROM rooms r JOIN members m ON m.room = r.id"
                " WHERE m.member = ? ORDER BY r.id",
                (member,),
            ).fetchall()
        return [Room.from_json(row, rev) for rev, row in rows]

    async def fill(self) -> float | None:
        return None  # a file on the service's own disk, bounded by nothing JetStream reserves

    async def close(self) -> None:
        self._db.close()

    def _index(self, room: Room) -> None:
        self._db.executemany("INSERT INTO members VALUES (?, ?)", [(m, room.id) for m in room.members])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
