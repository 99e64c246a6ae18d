"""The grant a connection's user name carries, and when it is stale (callout/grants.py):
pure functions, no server needed. The revocation tests exercise them on a real one."""

from __future__ import annotations

from unibus.callout.grants import Grant
from unibus.identity import Identity
from unibus.storage import Room

BOB = Identity.generate().public_key
OWNER = Identity.generate().public_key


def room(room_id: str, revision: int, *members: str) -> Room:
    people = {OWNER: "owner", **{m: "member" for m in members}}
    return Room(room_id, "ephemeral", f"unibus.room.{room_id}", OWNER, people, revision=revision)  # type: ignore[arg-type]


def test_the_name_round_trips_and_lists_only_rooms_the_identity_is_in() -> None:
    grant = Grant.of(BOB, [room("a", 3, BOB), room("b-2", 7, BOB), room("c", 9)], copy_revision=8)
    assert grant == Grant(BOB, 8, frozenset({"a", "b-2"}))
    assert grant.user_name == f"{BOB}:8:a,b-2"
    assert Grant.parse(grant.user_name) == grant
    assert Grant.parse(f"{BOB}:8:") == Grant(BOB, 8, frozenset())


def test_a_row_newer_than_the_copy_raises_the_stamp() -> None:
    """A row an instance wrote itself is in its copy before the watch brings it."""
    assert Grant.of(BOB, [room("a", 12, BOB)], copy_revision=8).revision == 12


def test_names_the_callout_did_not_write_are_no_grant() -> None:
    for name in ("", "anonymous", BOB, f"{BOB}:x:a", f"{BOB}:1:a.b", f"{BOB}:1:a:b", "UNOTAKEY:1:a"):
        assert Grant.parse(name) is None, name


def test_stale_when_a_granted_room_was_lost() -> None:
    grant = Grant(BOB, 10, frozenset({"a", "b"}))
    rooms = {"a": room("a", 4, BOB), "b": room("b", 11)}
    assert grant.stale(rooms.get, copy_revision=11)  # removed from b
    rooms["b"] = room("b", 12, BOB)
    assert not grant.stale(rooms.get, copy_revision=12)  # added back: holds it rightly
    del rooms["b"]
    assert grant.stale(rooms.get, copy_revision=13)  # b deleted


def test_a_grant_newer_than_the_copy_is_not_judged() -> None:
    """The copy may not show yet the add the grant reflects: a later pass judges it."""
    grant = Grant(BOB, 20, frozenset({"a"}))
    assert not grant.stale({"a": room("a", 4)}.get, copy_revision=19)


def test_a_grant_of_rooms_still_held_is_not_stale() -> None:
    grant = Grant(BOB, 5, frozenset({"a"}))
    assert not grant.stale({"a": room("a", 9, BOB)}.get, copy_revision=9)
