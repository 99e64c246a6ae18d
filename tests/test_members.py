"""Membership: who may add and remove, sealed keys per epoch, no lost update across instances."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from nats.aio.client import Client

from unibus.client import BadRequest, Conflict, ControlClient, Forbidden, Identity, NotFound, ServiceError
from unibus.natsserver import NatsServer

from harness.plane import StartPlane


def key(client: ControlClient) -> str:
    assert client.identity is not None
    return client.identity.public_key


async def test_owner_adds_and_removes_members(as_alice: ControlClient, as_bob: ControlClient) -> None:
    await as_alice.create_room("club")
    added = await as_alice.add_member("club", key(as_bob))
    assert {m["id"]: m["role"] for m in added["members"]} == {key(as_alice): "owner", key(as_bob): "member"}
    assert (await as_bob.info("club"))["role"] == "member"
    await as_alice.remove_member("club", key(as_bob))
    with pytest.raises(Forbidden):
        await as_bob.info("club")


async def test_members_cannot_add_or_remove_others(as_alice: ControlClient, as_bob: ControlClient) -> None:
    carol = Identity.generate().public_key
    await as_alice.create_room("strict")
    await as_alice.add_member("strict", key(as_bob))
    with pytest.raises(Forbidden):
        await as_bob.add_member("strict", carol)
    with pytest.raises(Forbidden):
        await as_bob.remove_member("strict", key(as_alice))


async def test_a_member_may_leave(as_alice: ControlClient, as_bob: ControlClient) -> None:
    await as_alice.create_room("exit")
    await as_alice.add_member("exit", key(as_bob))
    await as_bob.remove_member("exit", key(as_bob))
    assert [m["id"] for m in (await as_alice.members("exit"))["members"]] == [key(as_alice)]


async def test_add_errors(as_alice: ControlClient, as_bob: ControlClient) -> None:
    await as_alice.create_room("errs")
    with pytest.raises(BadRequest, match="member must be"):
        await as_alice.add_member("errs", "not-a-key")
    with pytest.raises(BadRequest, match="role"):
        await as_alice.add_member("errs", key(as_bob), role="admin")
    await as_alice.add_member("errs", key(as_bob))
    with pytest.raises(Conflict):
        await as_alice.add_member("errs", key(as_bob))
    with pytest.raises(NotFound, match="not a member"):
        await as_alice.remove_member("errs", Identity.generate().public_key)
    with pytest.raises(Conflict, match="creator"):
        await as_alice.remove_member("errs", key(as_alice))


async def test_encrypted_room_keys_per_epoch(as_alice: ControlClient, as_bob: ControlClient) -> None:
    carol = ControlClient(as_alice.nc, Identity.generate())
    await as_alice.create_room("vault", encrypted=True, sealed_key="QQ==")
    with pytest.raises(BadRequest, match="sealed_key"):
        await as_alice.add_member("vault", key(as_bob))
    await as_alice.add_member("vault", key(as_bob), sealed_key="Qg==")
    await as_alice.add_member("vault", key(carol), sealed_key="Qw==")
    assert (await as_bob.sealed_keys("vault"))["keys"] == {"1": "Qg=="}

    # Removing carol must re-key everyone who stays, and only them.
    with pytest.raises(BadRequest, match="every remaining member"):
        await as_alice.remove_member("vault", key(carol))
    with pytest.raises(BadRequest, match="every remaining member"):
        await as_alice.remove_member("vault", key(carol), {key(as_alice): "QTI=", key(carol): "QzI="})
    removed = await as_alice.remove_member("vault", key(carol), {key(as_alice): "QTI=", key(as_bob): "QjI="})
    assert removed["key_epoch"] == 2
    assert (await as_bob.sealed_keys("vault")) == {
        "room": "vault",
        "epoch": 2,
        "keys": {"1": "Qg==", "2": "QjI="},
    }
    with pytest.raises(Forbidden):
        await carol.sealed_keys("vault")


async def test_rotate_after_a_member_left_on_its_own(as_alice: ControlClient, as_bob: ControlClient) -> None:
    await as_alice.create_room("rekey", encrypted=True, sealed_key="QQ==")
    await as_alice.add_member("rekey", key(as_bob), sealed_key="Qg==")
    with pytest.raises(BadRequest):  # the leaver must not pick the key the others go on with
        await as_bob.remove_member("rekey", key(as_bob), {key(as_alice): "Qk9C"})
    assert len((await as_alice.members("rekey"))["members"]) == 2  # nothing changed
    assert (await as_alice.info("rekey"))["key_epoch"] == 1
    await as_bob.remove_member("rekey", key(as_bob))
    assert (await as_alice.info("rekey"))["key_epoch"] == 1
    rotated = await as_alice.rotate_key("rekey", {key(as_alice): "QTI="})
    assert rotated["key_epoch"] == 2
    with pytest.raises(BadRequest):
        await as_alice.rotate_key("rekey", {})


async def test_concurrent_adds_across_instances_lose_nothing(
    start_plane: StartPlane, nc: Client, as_alice: ControlClient
) -> None:
    await start_plane()
    await start_plane()
    await as_alice.create_room("crowd")
    newcomers = [Identity.generate().public_key for _ in range(20)]
    await asyncio.gather(*(as_alice.add_member("crowd", m) for m in newcomers))
    members = {m["id"] for m in (await as_alice.members("crowd"))["members"]}
    assert members == {key(as_alice), *newcomers}


async def test_revocation_on_one_instance_is_enforced_by_all(
    start_plane: StartPlane, nc: Client, as_alice: ControlClient, as_bob: ControlClient
) -> None:
    """Every instance answers from its own watched copy of the rows; removal must reach all."""
    second = await start_plane()
    await as_alice.create_room("revoke")
    await as_alice.add_member("revoke", key(as_bob))
    await as_alice.remove_member("revoke", key(as_bob))
    for _ in range(100):
        room = await second.plane.store.get("revoke")
        if room is not None and key(as_bob) not in room.members:
            break
        await asyncio.sleep(0.01)
    for _ in range(10):  # whichever instance the queue group picks
        with pytest.raises(Forbidden):
            await as_bob.history("revoke")


async def test_removal_holds_on_every_instance_through_a_nats_restart(
    start_plane: StartPlane, nats_server: NatsServer, nc: Client, alice: Identity, bob: Identity
) -> None:
    """A NATS restart cuts each instance's room-bucket watch, which nats-py notices only
    after missed heartbeats (about 10 s). Membership decisions bring the copy up to date
    first, so right after a removal no instance lets the removed member read, and right
    after an add every instance lets the new one in."""
    await start_plane()
    await start_plane()
    as_alice, as_bob = ControlClient(nc, alice), ControlClient(nc, bob)
    await as_alice.create_room("steady", encrypted=False)
    await as_alice.add_member("steady", bob.public_key)
    await asyncio.to_thread(nats_server.restart)
    for _ in range(200):  # until the service answers again (both instances reconnect)
        try:
            await as_bob.history("steady")
            break
        except (ServiceError, nats.errors.Error):
            await asyncio.sleep(0.05)
    await as_alice.remove_member("steady", bob.public_key)
    for _ in range(20):  # spread over both instances by the queue group
        with pytest.raises(Forbidden):
            await as_bob.history("steady")
    await as_alice.add_member("steady", bob.public_key)
    for _ in range(20):
        assert (await as_bob.history("steady")).frames == []
