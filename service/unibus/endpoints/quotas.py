"""What one identity may take of the shared service: rooms owned, rooms joined, members
per room, and how fast it creates. Counts answer 403 with the limit in the message; the
creation rate answers 429."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..config import Config
from ..errors import forbidden, too_many
from ..storage import Room, RoomStore

_BURST = 50.0


@dataclass
class CreationRate:
    """A token bucket per identity, per instance: `rate` creations a second, `_BURST` at
    once. Buckets that have refilled are forgotten, so memory follows active creators."""

    rate: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, identity: str) -> None:
        now = time.monotonic()
        tokens, since = self._buckets.get(identity, (_BURST, now))
        tokens = min(_BURST, tokens + (now - since) * self.rate)
        if tokens < 1:
            raise too_many(f"at most {self.rate:g} room creations a second; try again shortly")
        self._buckets[identity] = (tokens - 1, now)
        if len(self._buckets) > 10_000:
            full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= _BURST]
            for key in full:
                del self._buckets[key]


async def check_create(config: Config, store: RoomStore, rate: CreationRate, creator: str) -> None:
    rate.take(creator)
    owned = [r for r in await store.rooms_of(creator) if r.owner == creator]
    if len(owned) >= config.max_rooms_per_creator:
        raise forbidden(f"at most {config.max_rooms_per_creator} rooms per creator")


async def check_add(config: Config, store: RoomStore, room: Room, member: str) -> None:
    if len(room.members) >= config.max_members_per_room:
        raise forbidden(f"the room is full: at most {config.max_members_per_room} members")
    if len(await store.rooms_of(member)) >= config.max_rooms_per_member:
        raise forbidden(f"that identity is in {config.max_rooms_per_member} rooms, the most it may be in")
