"""An instance's copy of the rows answers "which rooms is this identity in" from an index
(storage/copy.py): the index must follow every change that reaches the copy, its own
writes and another instance's through the watch, as a scan of the rows would; and the
quotas that ask it count each room once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from unibus.config import Config
from unibus.endpoints.creations import LocalCreations, Rule
from unibus.endpoints.quotas import Underway, check_create
from unibus.errors import ApiError
from unibus.natsserver import NatsServer
from unibus.storage import KvStore, Room
from unibus.storage.rooms import Role
from unibus.wire.names import CONTROL_PREFIX, bucket_name


@pytest.fixture
async def open_nc(open_nats_server: NatsServer) -> AsyncIterator[Client]:
    conn = await nats.connect(open_nats_server.url)
    yield conn
    await conn.close()


def key(n: int) -> str:
    return f"U{n:055d}"


def room(room_id: str, owner: str, *members: str) -> Room:
    roles: dict[str, Role] = {owner: "owner", **{m: "member" for m in members}}
    return Room(room_id, "ephemeral", f"unibus.room.{room_id}", owner, roles)


async def test_an_identitys_rooms_follow_every_write_on_both_instances(open_nc: Client) -> None:
    js = open_nc.jetstream()
    writer = await KvStore.open(js, 1, 5.0, open_nc)
    reader = await KvStore.open(js, 1, 5.0, open_nc)
    alice, bob, carol = key(1), key(2), key(3)

    async def rooms(store: KvStore, member: str | None) -> list[str]:
        await store.catch_up()
        return [r.id for r in await store.rooms_of(member)]

    async def both(member: str | None) -> list[str]:
        seen = await rooms(writer, member)
        assert await rooms(reader, member) == seen, "the other instance's copy disagrees"
        return seen

    try:
        await writer.create(room("r1", alice, bob))
        await writer.create(room("r2", bob))
        await writer.create(room("r3", carol))
        assert await both(bob) == ["r1", "r2"]
        assert await both(alice) == ["r1"]
        assert await both(None) == ["r1", "r2", "r3"]

        def without_bob(r: Room) -> Room:
            return Room(r.id, r.mode, r.subject, r.owner, {m: v for m, v in r.members.items() if m != bob})

        def with_carol(r: Room) -> Room:
            return Room(r.id, r.mode, r.subject, r.owner, {**r.members, carol: "member"})

        await writer.update("r1", without_bob)
        assert await both(bob) == ["r2"]
        await reader.update("r1", with_carol)  # the other way round: the writer learns it by watch
        assert await both(carol) == ["r1", "r3"]
        assert await both(alice) == ["r1"]

        assert await writer.delete("r2")
        assert await both(bob) == []
        assert await reader.delete("r3")
        assert await both(carol) == ["r1"]
        await reader.create(room("r2", carol, bob))  # an id again, with other members
        assert await both(bob) == ["r2"]
        assert await both(carol) == ["r1", "r2"]
        assert await both(None) == ["r1", "r2"]
        assert await both(key(4)) == []
    finally:
        await writer.close()
        await reader.close()


async def test_a_create_whose_row_came_before_its_reply_counts_once_in_the_quota(open_nc: Client) -> None:
    """The watch may bring a new row into the copy before the create that wrote it has
    returned, while the create is still counted as under way: counted twice, a creator at
    its limit's edge was refused a room it was entitled to (seen in bench.scale, 16
    concurrent creates of one creator with 1,000 rooms allowed)."""
    store = await KvStore.open(open_nc.jetstream(), 1, 5.0, open_nc)
    config = Config.from_env({}, max_rooms_per_creator=2)
    rate = LocalCreations(Rule(1000.0))
    underway = Underway()
    alice = key(1)
    first, second, third = room("a1", alice), room("a2", alice), room("a3", alice)
    try:
        with underway.hold(first):
            await store.create(first)  # stored and in the copy; its create not yet returned
            await check_create(config, store, rate, second, alice, False, underway)
            with underway.hold(second), pytest.raises(ApiError, match="at most 2 rooms per creator"):
                await check_create(config, store, rate, third, alice, False, underway)
    finally:
        await store.close()


async def test_a_row_that_left_the_bucket_unseen_leaves_the_copy_when_the_watch_is_replaced(
    open_nc: Client,
) -> None:
    """A room deleted while an instance's watch was cut, whose delete marker an operator
    then purged (or whose key's messages were purged), leaves nothing any watch delivers.
    The replacement watch's snapshot is the truth: the row leaves the copy and its members
    lose the room, or the callout would go on granting a deleted room."""
    js = open_nc.jetstream()
    writer = await KvStore.open(js, 1, 5.0, open_nc)
    reader = await KvStore.open(js, 1, 5.0, open_nc)
    lost: list[tuple[str, frozenset[str]]] = []
    reader.on_membership_loss(lambda room_id, who: lost.append((room_id, who)))
    alice, bob = key(1), key(2)
    stream, bucket = f"KV_{bucket_name(CONTROL_PREFIX)}", bucket_name(CONTROL_PREFIX)
    try:
        await writer.create(room("gone", alice, bob))
        await writer.create(room("kept", alice))
        await reader.catch_up()
        assert reader.cached("gone") is not None
        for consumer in await js.consumers_info(stream):  # both watches cut, as by an outage
            await js.delete_consumer(stream, consumer.name)
        assert await writer.delete("gone")
        await js.purge_stream(stream, subject=f"$KV.{bucket}.gone")  # the marker, purged
        await reader.catch_up()  # behind the bucket: the watch is replaced
        assert reader.cached("gone") is None
        assert [r.id for r in await reader.rooms_of(bob)] == []
        assert [r.id for r in await reader.rooms_of(alice)] == ["kept"]
        assert ("gone", frozenset({alice, bob})) in lost
    finally:
        await writer.close()
        await reader.close()
