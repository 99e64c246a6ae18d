"""What the callout granted a connection, written where the revoker can read it back.

nats-server shows a callout-admitted connection's authorization in CONNZ (`auth: true`)
only through one field: `authorized_user`, the user JWT's `name` (checked on 2.15.1: the
JWT itself, its tags and its permissions are not shown). So the name carries the grant:

    <identity>:<revision>:<room>,<room>,…

`revision` is the room bucket's revision the grant was computed at (every write up to
it is reflected in the rooms), and the rooms are those whose subjects it may use. Room
ids are one token of `[A-Za-z0-9_-]`, so `:` and `,` cannot occur inside them.

A connection is stale when its grant holds a room its identity is no longer a member of,
judged from a copy of the bucket at least as new as the grant. That needs no record of
what changed: the same test serves the cut after a removal, the re-check of a connection
whose authorization was in flight, and the sweep of an instance that starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .. import identity
from ..storage import Room
from ..wire.ids import is_room_id


@dataclass(frozen=True)
class Grant:
    identity: str
    revision: int
    rooms: frozenset[str]

    @property
    def user_name(self) -> str:
        return f"{self.identity}:{self.revision}:{','.join(sorted(self.rooms))}"

    @classmethod
    def of(cls, member: str, rooms: Iterable[Room], copy_revision: int) -> Grant:
        """The grant of `member`'s rooms read from a copy at `copy_revision`. A row the
        copy took from a write of its own can be newer than the copy's position; the
        stamp is the newest of them, so it is never older than what the grant reflects."""
        held = [r for r in rooms if r.is_member(member) and is_room_id(r.id)]
        revision = max([copy_revision, *(r.revision for r in held)])
        return cls(member, revision, frozenset(r.id for r in held))

    @classmethod
    def parse(cls, user_name: str) -> Grant | None:
        """The grant a CONNZ `authorized_user` names; None for a name the callout did not
        write this way (the service's static users, anonymous, a connection still
        authenticating)."""
        parts = user_name.split(":")
        if len(parts) != 3 or not identity.is_public_key(parts[0]) or not parts[1].isdigit():
            return None
        rooms = frozenset(r for r in parts[2].split(",") if r)
        if not all(is_room_id(r) for r in rooms):
            return None
        return cls(parts[0], int(parts[1]), rooms)

    def stale(self, room_of: Callable[[str], Room | None], copy_revision: int) -> bool:
        """Whether this grant holds a room its identity has lost (removed, left, or the
        room deleted), judged from a copy at `copy_revision`. A grant newer than the
        copy cannot be judged from it (the copy may not yet show an add the grant
        reflects): not stale now, judged by a later look."""
        if self.revision > copy_revision:
            return False
        for room_id in self.rooms:
            room = room_of(room_id)
            if room is None or not room.is_member(self.identity):
                return True
        return False
