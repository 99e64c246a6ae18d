"""Membership changes on the data plane: grants cut nobody, revocations cut exactly the
connections that hold the lost room, and no revocation is missed (a writer killed after
its write, an instance that was down, more connections than a CONNZ page, connects
racing a removal). docs/security.md, "Membership changes reach the data plane".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from nats.aio.client import Client

from unibus.callout.authorizer import Authorizer
from unibus.callout.grants import Grant
from unibus.callout.keys import BoundaryKeys
from unibus.client import ControlClient, Identity
from unibus.identity import notice_subject
from unibus.natsserver import NatsServer
from unibus.storage import Room
from unibus.wire.interest import confirm_interest
from unibus.wire.names import ROOM_BUCKET

from harness.boundary import Watched, as_role, connect_as, reauthorize
from harness.instances import ServiceInstance
from harness.plane import StartPlane
from harness.waiting import wait_until

ROOM = "unibus.room.r"
Owner = Callable[[], Awaitable[ControlClient]]
SETTLED_S = 3.0
"""Longer than a revocation pass and the callout's answer window on a busy machine: by
then a revocation has landed (make bench measures how long it really takes)."""


async def grants_of(url: str, keys: BoundaryKeys, member: str) -> list[Grant]:
    """What nats-server says every open connection of `member` was granted (CONNZ names)."""
    async with as_role(url, keys, "system") as system:
        query = {"acc": "UNIBUS", "auth": True, "limit": 100_000}
        reply = await system.nc.request("$SYS.REQ.SERVER.PING.CONNZ", json.dumps(query).encode(), timeout=5)
    conns = json.loads(reply.data)["data"]["connections"]
    grants = [Grant.parse(c.get("authorized_user") or "") for c in conns]
    return [g for g in grants if g is not None and g.identity == member]


async def holding(url: str, keys: BoundaryKeys, member: str, room: str = "r") -> int:
    return sum(1 for g in await grants_of(url, keys, member) if room in g.rooms)


async def until(check, within_s: float = SETTLED_S) -> None:  # type: ignore[no-untyped-def]
    await wait_until(check, "the grants settle", within_s=within_s, every_s=0.05)


@pytest.fixture
async def owner(nats_server: NatsServer, alice: Identity) -> AsyncIterator[Owner]:
    """Alice's connection, made once the test has an instance up (`await owner()`); she
    creates the unencrypted room `r`."""
    made: list[Watched] = []

    async def connect() -> ControlClient:
        made.append(await connect_as(nats_server.url, alice))
        client = ControlClient(made[-1].nc, alice)
        await client.create_room("r", encrypted=False)
        return client

    yield connect
    for watched in made:
        await watched.nc.close()


@contextlib.asynccontextmanager
async def member_of_r(url: str, owner: ControlClient, member: Identity) -> AsyncIterator[Watched]:
    """`member` added to `r` and connected under a grant that holds it."""
    await owner.add_member("r", member.public_key)
    watched = await connect_as(url, member)
    try:
        yield watched
    finally:
        await watched.nc.close()


async def notices(nc: Client, member: Identity) -> asyncio.Queue[dict[str, str]]:
    box: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def got(msg) -> None:  # type: ignore[no-untyped-def]
        await box.put(json.loads(msg.data))

    await nc.subscribe(notice_subject(member.public_key), cb=got)
    await confirm_interest(nc)
    return box


# --- grants cut nobody --------------------------------------------------------------------


async def test_a_grant_cuts_nobody_and_is_noticed(
    start_plane: StartPlane, nats_server: NatsServer, owner: Owner, bob: Identity
) -> None:
    await start_plane()
    alice = await owner()
    bob_conn = await connect_as(nats_server.url, bob)
    try:
        told = await notices(bob_conn.nc, bob)
        before = bob_conn.nc.stats["reconnects"]
        await alice.add_member("r", bob.public_key)
        assert await asyncio.wait_for(told.get(), 5) == {"event": "granted", "room": "r"}
        await asyncio.sleep(1.5)  # a cut would have landed by now
        assert bob_conn.nc.stats["reconnects"] == before

        await reauthorize(bob_conn.nc)  # what a client does on the notice
        live = await bob_conn.nc.subscribe(ROOM)
        await bob_conn.nc.publish(ROOM, b"in")
        assert (await live.next_msg(timeout=3)).data == b"in"
    finally:
        await bob_conn.nc.close()


async def test_add_then_remove_of_a_member_who_never_reconnected_cuts_nobody(
    start_plane: StartPlane, nats_server: NatsServer, owner: Owner, bob: Identity
) -> None:
    await start_plane()
    alice = await owner()
    bob_conn = await connect_as(nats_server.url, bob)
    try:
        told = await notices(bob_conn.nc, bob)
        before = bob_conn.nc.stats["reconnects"]
        for _ in range(5):
            await alice.add_member("r", bob.public_key)
            await alice.remove_member("r", bob.public_key)
        await asyncio.sleep(SETTLED_S)
        assert bob_conn.nc.stats["reconnects"] == before
        events = [told.get_nowait()["event"] for _ in range(told.qsize())]
        assert events == ["granted", "revoked"] * 5
    finally:
        await bob_conn.nc.close()


async def test_a_removal_cuts_only_connections_that_hold_the_room(
    start_plane: StartPlane,
    nats_server: NatsServer,
    boundary_keys: BoundaryKeys,
    owner: Owner,
    bob: Identity,
) -> None:
    """Bob in two rooms: his connection from before he joined `r` keeps going when he
    leaves `r`; the one that took `r` up is cut and comes back without it."""
    await start_plane()
    alice = await owner()
    early = await connect_as(nats_server.url, bob)
    try:
        async with member_of_r(nats_server.url, alice, bob) as late:
            early_before, late_before = early.nc.stats["reconnects"], late.nc.stats["reconnects"]
            await ControlClient(late.nc, bob).remove_member("r", bob.public_key)  # he leaves
            await until(lambda: _reconnected(late.nc, late_before))
            await asyncio.sleep(1.0)
            assert early.nc.stats["reconnects"] == early_before
            assert await holding(nats_server.url, boundary_keys, bob.public_key) == 0
    finally:
        await early.nc.close()


async def _reconnected(nc: Client, before: int) -> bool:
    return bool(nc.stats["reconnects"] > before and nc.is_connected)


# --- nothing missed -----------------------------------------------------------------------


async def test_a_member_with_more_connections_than_a_page_is_cut_completely(
    start_plane: StartPlane,
    nats_server: NatsServer,
    boundary_keys: BoundaryKeys,
    owner: Owner,
    bob: Identity,
) -> None:
    await start_plane(connz_page_size=8)
    alice = await owner()
    await alice.add_member("r", bob.public_key)
    conns = [await connect_as(nats_server.url, bob) for _ in range(40)]
    try:
        assert await holding(nats_server.url, boundary_keys, bob.public_key) == 40
        await alice.remove_member("r", bob.public_key)

        async def none_left() -> bool:
            return await holding(nats_server.url, boundary_keys, bob.public_key) == 0

        await until(none_left)
    finally:
        for conn in conns:
            await conn.nc.close()


async def test_connects_racing_removals_keep_no_room(
    start_plane: StartPlane,
    nats_server: NatsServer,
    boundary_keys: BoundaryKeys,
    owner: Owner,
    bob: Identity,
) -> None:
    """Two instances; bob opens connections as fast as 16 tasks can while he is added and
    removed 5 times, keeping every one: once each removal has settled, none of his
    connections holds the room, also none whose authorization was being computed while
    the removal was written."""
    await start_plane()
    await start_plane()
    alice = await owner()
    opened: list[Watched] = []
    storming = asyncio.Event()

    async def storm() -> None:
        while storming.is_set():
            with contextlib.suppress(Exception):
                opened.append(await connect_as(nats_server.url, bob))

    try:
        for _ in range(5):
            await alice.add_member("r", bob.public_key)
            storming.set()
            tasks = [asyncio.create_task(storm()) for _ in range(16)]
            await asyncio.sleep(0.5)
            await alice.remove_member("r", bob.public_key)
            await asyncio.sleep(0.5)
            storming.clear()
            await asyncio.gather(*tasks)
            await asyncio.sleep(SETTLED_S)
            assert await holding(nats_server.url, boundary_keys, bob.public_key) == 0, len(opened)
            for conn in opened:
                await conn.nc.close()
            opened.clear()
    finally:
        storming.clear()
        for conn in opened:
            await conn.nc.close()


async def test_a_grant_computed_before_a_removal_but_applied_after_its_pass_is_cut(
    start_plane: StartPlane,
    nats_server: NatsServer,
    boundary_keys: BoundaryKeys,
    owner: Owner,
    bob: Identity,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race made certain instead of hoped for: the callout computes bob's grant (with
    the room), then its answer is held back 1 s, within nats-server's 2 s authorization
    window; bob is removed meanwhile and the revocation pass finds his connection still
    being authorized. It must look again once the grant is applied, and cut it."""
    await start_plane()
    alice = await owner()
    await alice.add_member("r", bob.public_key)
    slow = asyncio.Event()
    answer = Authorizer.answer

    async def answer_late(self: Authorizer, request: bytes) -> tuple[bytes, str]:
        result = await answer(self, request)
        if slow.is_set():
            slow.clear()
            await asyncio.sleep(1.0)  # the grant is computed; the server gets it later
        return result

    monkeypatch.setattr(Authorizer, "answer", answer_late)
    slow.set()
    connecting = asyncio.create_task(connect_as(nats_server.url, bob))
    await until(lambda: _not_set(slow))  # bob's grant, with the room, is computed
    await alice.remove_member("r", bob.public_key)
    late = await connecting
    try:

        async def none_left() -> bool:
            return await holding(nats_server.url, boundary_keys, bob.public_key) == 0

        await until(none_left)
        await until(lambda: _reconnected(late.nc, 0))  # it held the room, and was cut
    finally:
        await late.nc.close()


async def _not_set(event: asyncio.Event) -> bool:
    return not event.is_set()


async def _write_removal(nc: Client, member: str) -> None:
    """Remove `member` from `r` in the bucket itself, as an instance does before it dies."""
    rows = await nc.jetstream().key_value(ROOM_BUCKET)
    entry = await rows.get("r")
    assert entry.value is not None
    room = Room.from_json(entry.value, entry.revision or 0)
    changed = replace(room, members={k: v for k, v in room.members.items() if k != member})
    await rows.update("r", changed.to_json(), last=entry.revision)


def _instance(tmp_path: Path, url: str, name: str) -> ServiceInstance:
    env = {"UNIBUS_KEYS_DIR": str(tmp_path / "keys"), "UNIBUS_REVOCATION_SWEEP_S": "3600"}
    return ServiceInstance(name, url, tmp_path / name, env)


async def test_a_removal_is_cut_though_its_writer_dies_after_the_write(
    tmp_path: Path,
    nats_server: NatsServer,
    nc: Client,
    boundary_keys: BoundaryKeys,
    owner: Owner,
    bob: Identity,
) -> None:
    """Two instances as processes. One dies (SIGKILL) as a removal is written to the
    bucket the way it writes one, so it never acts on it: the other instance cuts bob,
    from its watch. (Killing an instance between its write and its own pass cannot be
    timed from outside; writing for it is that moment exactly.)"""
    writer = _instance(tmp_path, nats_server.url, "writer").start()
    other = _instance(tmp_path, nats_server.url, "other").start()
    try:
        alice = await owner()
        async with member_of_r(nats_server.url, alice, bob) as member:
            await member.nc.subscribe(ROOM)
            await _write_removal(nc, bob.public_key)
            writer.kill()
            assert await member.refused("subscription", ROOM, within_s=SETTLED_S), member.errors
            assert await holding(nats_server.url, boundary_keys, bob.public_key) == 0
    finally:
        writer.kill()
        other.stop()


async def test_an_instance_that_starts_sweeps_a_revocation_it_missed(
    tmp_path: Path,
    nats_server: NatsServer,
    nc: Client,
    boundary_keys: BoundaryKeys,
    owner: Owner,
    bob: Identity,
) -> None:
    """The only instance is down when bob's removal is written: bob keeps the room (no one
    cuts) until an instance starts, whose first pass cuts him."""
    first = _instance(tmp_path, nats_server.url, "first").start()
    alice = await owner()
    async with member_of_r(nats_server.url, alice, bob) as member:
        await member.nc.subscribe(ROOM)
        first.kill()
        await _write_removal(nc, bob.public_key)
        await asyncio.sleep(1.0)
        assert await holding(nats_server.url, boundary_keys, bob.public_key) == 1
        later = _instance(tmp_path, nats_server.url, "later").start()
        try:
            assert await member.refused("subscription", ROOM, within_s=SETTLED_S), member.errors
        finally:
            later.stop()


# --- notices ------------------------------------------------------------------------------


async def test_nobody_can_send_a_notice_to_someone_else(
    start_plane: StartPlane, nats_server: NatsServer, owner: Owner, alice: Identity, bob: Identity
) -> None:
    """A member of bob's room and a stranger both try to tell bob he was granted a room:
    nats-server refuses the publish, bob hears nothing."""
    await start_plane()
    await owner()
    bob_conn = await connect_as(nats_server.url, bob)
    mallory = await connect_as(nats_server.url, Identity.generate())
    alice_conn = await connect_as(nats_server.url, alice)
    try:
        told = await notices(bob_conn.nc, bob)
        forged = json.dumps({"event": "granted", "room": "r"}).encode()
        for sender in (mallory, alice_conn):
            await sender.nc.publish(notice_subject(bob.public_key), forged)
            await sender.nc.flush()
            assert await sender.refused("publish", notice_subject(bob.public_key)), sender.errors
        await asyncio.sleep(0.5)
        assert told.empty()
    finally:
        for conn in (bob_conn, mallory, alice_conn):
            await conn.nc.close()
