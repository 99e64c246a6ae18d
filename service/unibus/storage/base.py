"""What the handlers need from a room store, whichever backend holds the rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..errors import DomainError
from .rooms import Room

Mutation = Callable[[Room], Room]


class RoomExists(DomainError):
    """A create lost to another create of the same id (exactly one wins)."""


class StoreUnavailable(DomainError):
    """The store cannot answer right now (JetStream electing a leader, NATS away): nothing
    was decided from a stale copy, and the same request later will do."""


class ConcurrentChange(DomainError):
    """A compare-and-set kept losing to other writers of the same row; nothing was
    written, and the same request later will do."""


class RoomStore(Protocol):
    @property
    def revision(self) -> int:
        """Every write up to this revision is reflected in what `cached` answers."""
        ...

    def cached(self, room_id: str) -> Room | None:
        """The row as the store's copy holds it, without a round trip."""
        ...

    def on_membership_loss(self, callback: Callable[[str, frozenset[str]], None]) -> None:
        """Have `callback(room_id, identities)` called when identities lose a room."""
        ...

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
