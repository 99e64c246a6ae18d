"""What the handlers need from a room store, whichever backend holds the rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .rooms import Room

Mutation = Callable[[Room], Room]


class RoomExists(Exception):
    pass


class RoomStore(Protocol):
    durable_history: bool
    """False when there is no JetStream: rooms work, histories are empty."""

    async def get(self, room_id: str) -> Room | None: ...

    async def catch_up(self) -> None:
        """Return once the store's copy (if it keeps one) reflects every stored write."""
        ...

    async def create(self, room: Room) -> Room:
        """Insert a new row; raises RoomExists if the id is taken (exactly one creator wins)."""
        ...

    async def update(self, room_id: str, mutate: Mutation) -> Room | None:
        """Apply `mutate` atomically (compare-and-set, retried on a concurrent write).

        `mutate` may raise to abort; None means the room does not exist."""
        ...

    async def delete(self, room_id: str) -> bool: ...

    async def rooms_of(self, member: str | None) -> list[Room]:
        """Rooms `member` belongs to; every room when member is None."""
        ...

    async def fill(self) -> float | None:
        """How full the store's space for rows is (1.0: full); None where it has no bound."""
        ...

    async def close(self) -> None: ...
