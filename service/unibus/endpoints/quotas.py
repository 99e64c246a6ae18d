"""What one identity may take of the shared service (docs/security.md, "Admission model"):
who may create rooms at all, rooms owned, store reserved, rooms joined, members per room,
how fast it creates, and what is left of the room bucket.

Counts and budgets answer 403 with the limit in the message; the creation rate 429; a
room bucket past its creation line 507. Checks run cheapest first, and the creation rate,
which counts, runs last, so a create refused for another reason spends none of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..config import Config
from ..errors import forbidden, insufficient_storage
from ..storage import Room, RoomStore
from .creations import CreationLimit

MIB = 1024 * 1024

CREATES_STOP_AT = 0.75
"""How full the room bucket may be before creates are refused: the last quarter is kept
for changes to rooms that exist, so a bucket filled with new rooms never stops them."""
ADDS_STOP_AT = 0.875
"""…and before member adds are refused: removals, role changes and deletes, which do not
grow the bucket, keep the last eighth."""


class Underway:
    """Creates in progress on this instance, by creator. The quotas count them with the
    rooms stored, so a burst of concurrent creates cannot all pass a count made before
    any of them was stored (creates spread over several instances can each pass it once)."""

    def __init__(self) -> None:
        self._rooms: dict[str, list[Room]] = {}

    @contextlib.contextmanager
    def hold(self, room: Room) -> Iterator[None]:
        rooms = self._rooms.setdefault(room.owner or "", [])
        rooms.append(room)
        try:
            yield
        finally:
            rooms.remove(room)
            if not rooms:
                del self._rooms[room.owner or ""]

    def besides(self, room: Room) -> list[Room]:
        """The other creates under way by the room's creator."""
        return [r for r in self._rooms.get(room.owner or "", ()) if r is not room]


async def check_create(
    config: Config,
    store: RoomStore,
    rate: CreationLimit,
    room: Room,
    signer: str | None,
    reserves: bool,
    underway: Underway,
) -> None:
    """May `signer` (None: an unsigned create, `dev`/`off` modes) create `room`, which
    reserves `config.room_max_bytes` in the JetStream store when `reserves`?"""
    creators = config.allowed_creators
    if creators and signer not in creators:
        raise forbidden("only the creators this deployment lists (UNIBUS_CREATORS) may create rooms")
    owner = room.owner or ""
    stored = [r for r in await store.rooms_of(owner) if r.owner == owner]
    # A create's row can reach the copy (through the watch) before the create returns:
    # counted as stored, it is not counted again as under way.
    known = {r.id for r in stored}
    owned = stored + [r for r in underway.besides(room) if r.id not in known]
    if len(owned) >= config.max_rooms_per_creator:
        raise forbidden(f"at most {config.max_rooms_per_creator} rooms per creator")
    if reserves:
        reserved = sum(config.room_max_bytes for r in owned if r.persisted)
        if reserved + config.room_max_bytes > config.creator_store_bytes:
            raise forbidden(
                f"your persisted rooms reserve {reserved / MIB:g} MiB of the store, and one identity may"
                f" reserve at most {config.creator_store_bytes / MIB:g} MiB ({config.room_max_bytes / MIB:g}"
                " MiB a room): delete one, or create an ephemeral room"
            )
    await _bucket_below(store, CREATES_STOP_AT, "creates")
    await rate.take(owner)


async def check_add(config: Config, store: RoomStore, room: Room, member: str) -> None:
    if len(room.members) >= config.max_members_per_room:
        raise forbidden(f"the room is full: at most {config.max_members_per_room} members")
    if len(await store.rooms_of(member)) >= config.max_rooms_per_member:
        raise forbidden(f"that identity is in {config.max_rooms_per_member} rooms, the most it may be in")
    await _bucket_below(store, ADDS_STOP_AT, "member adds")


async def _bucket_below(store: RoomStore, line: float, what: str) -> None:
    fill = await store.fill()
    if fill is not None and fill >= line:
        raise insufficient_storage(
            f"the room bucket is {fill:.0%} full and stops {what} at {line:.0%}: the rest is kept for"
            " changes to existing rooms; nothing was changed (raise UNIBUS_BUCKET_MAX_BYTES)"
        )
