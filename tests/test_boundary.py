"""The trust boundary, tried as an attacker would, on the shipped deploy/nats config.

Every bypass that worked against an open server (issue: the trust boundary) is attempted
here by a stranger (a valid nkey that is in no room), by a member of another room, by a
removed member and by the shim's user; each must fail at nats-server itself, with the
rooms, streams and nonce stream unchanged afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator

import nats.errors
import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from unibus.callout.keys import BoundaryKeys
from unibus.client import Identity, Peer
from unibus.config import Config
from unibus.natsserver import NatsServer
from unibus.runner import Running
from unibus.storage import Room
from unibus.wire.interest import confirm_interest
from unibus.wire.names import CONTROL_PREFIX, INBOXES, ROLES, ROOM_BUCKET, nonce_stream_name

from harness.boundary import Watched, as_role, connect_as, denied_request, reauthorize, refused_connect
from harness.plane import StartPlane
from harness.waiting import wait_until

CUT_BOUND_S = 3.0
"""The longest a removed member's connection may outlive its removal by design: a
revocation pass, a reconnect, and slack for a busy CI machine. How long it really
takes is measured by `make bench`."""


@pytest.fixture
async def owner(bounded_plane: Running, alice: Identity) -> AsyncIterator[tuple[Watched, Peer]]:
    """Alice, connected as herself, owning the encrypted persisted room `vault`."""
    watched = await connect_as(bounded_plane.nats_url, alice)
    peer = Peer(watched.nc, alice)
    await peer.create_room("vault")
    await peer.publish("vault", b"secret one")
    yield watched, peer
    await watched.nc.close()


@pytest.fixture
async def stranger(bounded_plane: Running) -> AsyncIterator[Watched]:
    watched = await connect_as(bounded_plane.nats_url, Identity.generate())
    yield watched
    await watched.nc.close()


async def stored(plane: Running, stream: str) -> tuple[int, int]:
    """(messages, last_seq) of a stream, read through the service's own connection."""
    info = await plane.nc.jetstream().stream_info(stream)
    return info.state.messages, info.state.last_seq


# --- connecting ---------------------------------------------------------------------------


async def test_a_connection_without_an_nkey_is_refused(bounded_plane: Running) -> None:
    assert "authorization violation" in (await refused_connect(bounded_plane.nats_url)).lower()


async def test_over_the_websocket_too(bounded_plane: Running, shipped_nats: NatsServer) -> None:
    """Browsers connect over the websocket: the same callout, the same refusals."""
    websocket = shipped_nats.spec.websocket_url
    assert websocket is not None
    assert "authorization violation" in (await refused_connect(websocket)).lower()
    stranger = await connect_as(websocket, Identity.generate())
    try:
        await denied_request(stranger, "$JS.API.STREAM.LIST")
    finally:
        await stranger.nc.close()


async def forged_connect(url: str, claimed: str) -> bytes:
    """Speak the protocol by hand: claim the public key `claimed`, sign the server's nonce
    with some other key, and return the server's first answer."""
    host, port = url.removeprefix("nats://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    info = json.loads((await reader.readline()).split(b" ", 1)[1])
    forged = Identity.generate().sign(info["nonce"].encode())
    connect = {
        "nkey": claimed,
        "sig": base64.urlsafe_b64encode(forged).decode().rstrip("="),
        "verbose": False,
        "protocol": 1,
    }
    writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


async def test_claiming_someone_elses_nkey_without_its_seed_is_refused(
    bounded_plane: Running, alice: Identity
) -> None:
    answer = await forged_connect(bounded_plane.nats_url, alice.public_key)
    assert answer.startswith(b"-ERR") and b"Authorization Violation" in answer


async def test_the_service_users_cannot_be_claimed_without_their_seeds(
    bounded_plane: Running, boundary_keys: BoundaryKeys
) -> None:
    """A static user's public key is no secret: an impostor still has to sign the nonce."""
    for role in ROLES:
        answer = await forged_connect(bounded_plane.nats_url, boundary_keys.users[role].public_key)
        assert answer.startswith(b"-ERR") and b"Authorization Violation" in answer, role


# --- JetStream, the bucket, the nonce stream ----------------------------------------------


async def test_a_stranger_cannot_read_the_room_bucket_or_a_rooms_stream(
    bounded_plane: Running, owner: tuple[Watched, Peer], stranger: Watched
) -> None:
    await denied_request(stranger, f"$JS.API.STREAM.INFO.KV_{ROOM_BUCKET}")
    await denied_request(stranger, f"$JS.API.DIRECT.GET.KV_{ROOM_BUCKET}.$KV.{ROOM_BUCKET}.vault")
    await denied_request(stranger, "$JS.API.STREAM.MSG.GET.UNIBUS_vault", b'{"seq": 1}')
    await denied_request(stranger, "$JS.API.STREAM.INFO.UNIBUS_vault")
    await denied_request(stranger, "$JS.API.STREAM.LIST")


async def test_a_stranger_cannot_write_the_room_bucket(
    bounded_plane: Running, owner: tuple[Watched, Peer], stranger: Watched
) -> None:
    _, peer = owner
    before = await peer.control.members("vault")
    row = json.dumps({"id": "vault", "members": {"U" + "A" * 55: "owner"}}).encode()
    await stranger.nc.publish(f"$KV.{ROOM_BUCKET}.vault", row)
    assert await stranger.refused("publish", f"$KV.{ROOM_BUCKET}.vault")
    assert await peer.control.members("vault") == before


async def test_a_stranger_cannot_purge_delete_or_precreate_room_streams(
    bounded_plane: Running, owner: tuple[Watched, Peer], stranger: Watched
) -> None:
    before = await stored(bounded_plane, "UNIBUS_vault")
    await denied_request(stranger, "$JS.API.STREAM.PURGE.UNIBUS_vault")
    await denied_request(stranger, "$JS.API.STREAM.DELETE.UNIBUS_vault")
    await denied_request(stranger, "$JS.API.STREAM.MSG.DELETE.UNIBUS_vault", b'{"seq": 1}')
    trap = StreamConfig(name="UNIBUS_later", subjects=["unibus.room.later"], max_msgs=1, discard="new")
    await denied_request(stranger, "$JS.API.STREAM.CREATE.UNIBUS_later", json.dumps(trap.as_dict()).encode())
    assert await stored(bounded_plane, "UNIBUS_vault") == before
    with pytest.raises(nats.js.errors.NotFoundError):
        await bounded_plane.nc.jetstream().stream_info("UNIBUS_later")


async def test_a_stranger_cannot_touch_the_nonce_stream(bounded_plane: Running, stranger: Watched) -> None:
    stream = nonce_stream_name(CONTROL_PREFIX)
    before = (await bounded_plane.nc.jetstream().stream_info(stream)).config
    shrunk = json.dumps({**before.as_dict(), "duplicate_window": 1_000_000}).encode()
    await denied_request(stranger, f"$JS.API.STREAM.UPDATE.{stream}", shrunk)
    await denied_request(stranger, f"$JS.API.STREAM.DELETE.{stream}")
    await stranger.nc.publish(f"{CONTROL_PREFIX}.nonces", b"")
    assert await stranger.refused("publish", f"{CONTROL_PREFIX}.nonces")
    after = (await bounded_plane.nc.jetstream().stream_info(stream)).config
    assert after.duplicate_window == before.duplicate_window


# --- control subjects and inboxes ---------------------------------------------------------


async def test_nobody_but_the_service_can_subscribe_to_control_subjects(
    bounded_plane: Running, owner: tuple[Watched, Peer], stranger: Watched
) -> None:
    """Impersonating the service (answering `…key` before it) needs the subscription."""
    for subject in (f"{CONTROL_PREFIX}.>", f"{CONTROL_PREFIX}.rooms.*.key", "$SYS.REQ.USER.AUTH"):
        await stranger.nc.subscribe(subject)
        assert await stranger.refused("subscription", subject), subject
    _, peer = owner
    keys = await peer.control.sealed_keys("vault")  # the real service still answers
    assert keys["epoch"] == 1


async def test_inboxes_are_private(
    bounded_plane: Running, owner: tuple[Watched, Peer], stranger: Watched, alice: Identity
) -> None:
    for subject in ("_INBOX.>", f"_INBOX.{alice.public_key}.>", f"{INBOXES['service']}.>"):
        await stranger.nc.subscribe(subject)
        assert await stranger.refused("subscription", subject), subject
    await stranger.nc.publish(f"_INBOX.{alice.public_key}.fake", b"{}")
    assert await stranger.refused("publish", f"_INBOX.{alice.public_key}.fake")


async def test_a_reply_subject_cannot_aim_the_service_at_jetstream(
    bounded_plane: Running, owner: tuple[Watched, Peer], stranger: Watched
) -> None:
    """The service answers on a connection that may publish to inboxes only, so a request
    whose reply subject is a JetStream API call changes nothing."""
    before = await stored(bounded_plane, "UNIBUS_vault")
    for verb in ("PURGE", "DELETE"):
        await stranger.nc.publish(
            f"{CONTROL_PREFIX}.rooms.vault.info", b"", reply=f"$JS.API.STREAM.{verb}.UNIBUS_vault"
        )
    await stranger.nc.flush()
    await asyncio.sleep(0.3)
    assert await stored(bounded_plane, "UNIBUS_vault") == before


# --- rooms --------------------------------------------------------------------------------


async def test_a_non_member_can_neither_publish_into_nor_read_a_room(
    bounded_plane: Running, owner: tuple[Watched, Peer], bob: Identity
) -> None:
    outsider = await connect_as(bounded_plane.nats_url, bob)
    try:
        other = Peer(outsider.nc, bob)
        await other.create_room("elsewhere")  # a member of another room
        before = await stored(bounded_plane, "UNIBUS_vault")
        await outsider.nc.subscribe("unibus.room.vault")
        assert await outsider.refused("subscription", "unibus.room.vault")
        await outsider.nc.publish("unibus.room.vault", b"forged frame")
        assert await outsider.refused("publish", "unibus.room.vault")
        await denied_request(outsider, "$JS.API.STREAM.INFO.UNIBUS_vault")
        assert await stored(bounded_plane, "UNIBUS_vault") == before
    finally:
        await outsider.nc.close()


async def test_a_member_gets_no_jetstream_even_on_its_own_room(
    bounded_plane: Running, owner: tuple[Watched, Peer]
) -> None:
    """JetStream answers on any reply subject the requester names, from inside the account
    and unchecked: a member allowed even `STREAM.INFO` of its own room could have the answer
    written into the room bucket. So members get no JetStream at all; they read history
    through the control plane."""
    member, _ = owner
    await denied_request(member, "$JS.API.STREAM.INFO.UNIBUS_vault")
    await denied_request(member, "$JS.API.CONSUMER.CREATE.UNIBUS_vault", b"{}")
    await denied_request(member, "$JS.API.DIRECT.GET.UNIBUS_vault", b'{"seq": 1}')
    info = await bounded_plane.nc.jetstream().stream_info("UNIBUS_vault")
    widened = json.dumps({**info.config.as_dict(), "subjects": ["unibus.room.vault", "_INBOX.>"]}).encode()
    await denied_request(member, "$JS.API.STREAM.UPDATE.UNIBUS_vault", widened)
    await denied_request(member, "$JS.API.STREAM.PURGE.UNIBUS_vault")
    assert (await stored(bounded_plane, "UNIBUS_vault"))[0] == 1


async def test_the_stored_subject_is_the_servers_alone(
    bounded_plane: Running, owner: tuple[Watched, Peer], bob: Identity
) -> None:
    """A member follows its room's stored subject, where every stored frame arrives with
    its stream sequence; it may never publish there (a frame with a sequence of its
    choosing), and a non-member may not even listen."""
    member, _ = owner

    async def fixture_frame_stored() -> bool:
        return (await stored(bounded_plane, "UNIBUS_vault"))[0] == 1

    # The owner's frame is captured asynchronously: subscribed before it is stored, its
    # copy (sequence 1) would arrive first and be taken for the frame under test.
    await wait_until(fixture_frame_stored, "the owner's first frame is stored")
    live = await member.nc.subscribe("unibus.room.vault.stored")
    await member.nc.publish(
        "unibus.room.vault.stored", b"a frame with a made-up sequence", headers={"Nats-Sequence": "1"}
    )
    assert await member.refused("publish", "unibus.room.vault.stored")
    await member.nc.publish("unibus.room.vault", b"a real frame")
    msg = await live.next_msg(timeout=5)
    assert (msg.data, msg.headers and msg.headers["Nats-Sequence"]) == (b"a real frame", "2")
    with pytest.raises(nats.errors.TimeoutError):
        await live.next_msg(timeout=0.3)  # nothing else arrived, the forged frame least of all
    outsider = await connect_as(bounded_plane.nats_url, bob)
    try:
        await outsider.nc.subscribe("unibus.room.vault.stored")
        assert await outsider.refused("subscription", "unibus.room.vault.stored")
        await outsider.nc.publish("unibus.room.vault.stored", b"forged")
        assert await outsider.refused("publish", "unibus.room.vault.stored")
    finally:
        await outsider.nc.close()
    assert (await stored(bounded_plane, "UNIBUS_vault"))[0] == 2


async def test_a_publish_cannot_aim_a_stream_acknowledgement_anywhere(
    bounded_plane: Running, owner: tuple[Watched, Peer], bob: Identity
) -> None:
    """A core publish may carry any reply subject, and a stream that acknowledged would
    publish its ack there from inside the account: into the room bucket, another room or
    the nonce stream. Room streams do not acknowledge, so the frame is stored and nothing
    else is written."""
    member, _ = owner
    victim = Peer((await connect_as(bounded_plane.nats_url, bob)).nc, bob)
    await victim.create_room("target")
    js = bounded_plane.nc.jetstream()
    row = await (await js.key_value(ROOM_BUCKET)).get("target")
    nonces = (await js.stream_info(nonce_stream_name(CONTROL_PREFIX))).state.last_seq
    before = await stored(bounded_plane, "UNIBUS_target")
    for reply in (f"$KV.{ROOM_BUCKET}.target", "unibus.room.target", f"{CONTROL_PREFIX}.nonces"):
        await member.nc.publish("unibus.room.vault", b"frame with a hostile reply", reply=reply)
    await member.nc.flush()

    async def captured() -> bool:
        return (await stored(bounded_plane, "UNIBUS_vault"))[0] == 4

    await wait_until(captured, "the member's four frames are stored")  # captured as usual
    assert (await (await js.key_value(ROOM_BUCKET)).get("target")).revision == row.revision
    assert await stored(bounded_plane, "UNIBUS_target") == before
    assert (await js.stream_info(nonce_stream_name(CONTROL_PREFIX))).state.last_seq == nonces
    assert (await victim.control.info("target"))["owner"] == bob.public_key
    await victim.nc.close()


async def test_a_removed_member_is_cut_off_at_the_server(
    bounded_plane: Running, owner: tuple[Watched, Peer], bob: Identity
) -> None:
    _, peer = owner
    await peer.add_member("vault", bob.public_key)
    member = await connect_as(bounded_plane.nats_url, bob)
    try:
        live = await member.nc.subscribe("unibus.room.vault")
        await member.nc.publish("unibus.room.vault", b"bob was here")
        await member.nc.flush()
        assert (await live.next_msg(timeout=2)).data == b"bob was here"

        await peer.remove_member("vault", bob.public_key)
        # Bounded by the design, not timed (make bench times it): a revocation pass cuts
        # bob, then he reconnects (250 ms) and re-subscribes, refused.
        removed_at = time.monotonic()
        deadline = removed_at + CUT_BOUND_S
        while not await member.refused("subscription", "unibus.room.vault", within_s=0.05):
            assert time.monotonic() < deadline, member.errors
        before = await stored(bounded_plane, "UNIBUS_vault")
        await member.nc.publish("unibus.room.vault", b"after removal")
        assert await member.refused("publish", "unibus.room.vault")
        assert await stored(bounded_plane, "UNIBUS_vault") == before
    finally:
        await member.nc.close()


async def test_an_identity_at_the_member_quota_is_admitted_with_every_room(
    bounded_plane: Running, shipped_nats: NatsServer, boundary_keys: BoundaryKeys, alice: Identity
) -> None:
    """The largest grant the service can issue: a member of as many rooms as one identity
    may be in, every room persisted and its id as long as ids go. Its user JWT (hundreds of
    KiB, inside the callout's answer) must pass nats-server's limits on the callout's reply
    and be honoured: the first and the last room work, a room it is not in does not."""
    quota = Config().max_rooms_per_member
    ids = [f"{i:04d}".ljust(64, "q") for i in range(quota)]
    owner = Identity.generate().public_key
    async with as_role(shipped_nats.url, boundary_keys, "service") as service:
        bucket = await service.nc.jetstream().key_value(ROOM_BUCKET)
        for start in range(0, quota, 100):  # the rows as the service writes them, 100 at a time
            await asyncio.gather(
                *(
                    bucket.put(
                        room_id,
                        Room(
                            room_id,
                            "matrix",
                            f"unibus.room.{room_id}",
                            owner,
                            {owner: "owner", alice.public_key: "member"},
                        ).to_json(),
                    )
                    for room_id in ids[start : start + 100]
                )
            )
    member = await connect_as(bounded_plane.nats_url, alice)
    try:
        for room_id in (ids[0], ids[-1]):
            live = await member.nc.subscribe(f"unibus.room.{room_id}")
            await member.nc.subscribe(f"unibus.room.{room_id}.stored")
            await member.nc.publish(f"unibus.room.{room_id}", b"hello")
            assert (await live.next_msg(timeout=5)).data == b"hello"
        await member.nc.subscribe("unibus.room.not-one-of-them")
        assert await member.refused("subscription", "unibus.room.not-one-of-them")
        assert not [e for e in member.errors if "not-one-of-them" not in e]
    finally:
        await member.nc.close()


async def test_the_creator_publishes_right_after_create(bounded_plane: Running, alice: Identity) -> None:
    """Creating a room re-authorizes the creator's connection; the client waits for it,
    so the first frame is not refused."""
    creator = await connect_as(bounded_plane.nats_url, alice)
    try:
        peer = Peer(creator.nc, alice)
        room = await peer.create_room("fresh")
        await room.publish(b"first")
        page = await room.history()
        assert [m.data for m in page.messages if m.ok] == [b"first"]  # type: ignore[union-attr]
        assert not any("permissions violation" in e for e in creator.errors)
    finally:
        await creator.nc.close()


# --- the shim's user ----------------------------------------------------------------------


async def test_the_shim_user_may_request_history_and_nothing_else(
    bounded_plane: Running, owner: tuple[Watched, Peer], boundary_keys: BoundaryKeys
) -> None:
    async with as_role(bounded_plane.nats_url, boundary_keys, "shim") as shim:
        reply = await shim.nc.request(f"{CONTROL_PREFIX}.rooms.vault.history", b"", timeout=5)
        assert reply.headers and reply.headers.get("Nats-Service-Error-Code") == "401"  # unsigned
        await shim.nc.publish("unibus.room.vault", b"x")
        assert await shim.refused("publish", "unibus.room.vault")
        await denied_request(shim, f"{CONTROL_PREFIX}.rooms.create", b"{}")
        await denied_request(shim, "$JS.API.STREAM.INFO.UNIBUS_vault")
        await shim.nc.subscribe("unibus.room.vault")
        assert await shim.refused("subscription", "unibus.room.vault")


async def until_refused(member: Watched, subject: str, within_s: float) -> float:
    """Seconds until the server refused `member`'s subscription on `subject` (it
    re-subscribes on reconnecting, under the new permissions)."""
    started = time.monotonic()
    while not await member.refused("subscription", subject, within_s=0.01):
        assert time.monotonic() - started < within_s, member.errors
    return time.monotonic() - started


async def test_revocation_holds_across_instances_and_a_nats_restart(
    start_bounded: StartPlane, shipped_nats: NatsServer, alice: Identity, bob: Identity
) -> None:
    """Two instances; NATS restarts under them (their room-bucket watches are interrupted);
    the removal goes through either one: bob is still refused (within the design's bound),
    and stays refused however often he reconnects."""
    first = await start_bounded()
    await start_bounded()
    owner = await connect_as(first.nats_url, alice)
    member = await connect_as(first.nats_url, bob)
    try:
        peer = Peer(owner.nc, alice)
        await peer.create_room("shared")
        await peer.add_member("shared", bob.public_key)
        await reauthorize(member.nc)  # a grant cuts nobody: bob re-authorizes himself
        await member.nc.subscribe("unibus.room.shared")
        await confirm_interest(member.nc)

        await asyncio.to_thread(shipped_nats.restart)
        for nc in (owner.nc, member.nc):
            await wait_until(lambda nc=nc: nc.is_connected, "reconnected after the restart")
        await peer.remove_member("shared", bob.public_key)
        await until_refused(member, "unibus.room.shared", within_s=CUT_BOUND_S)

        member.errors.clear()
        await member.nc.publish("unibus.room.shared", b"still here?")
        assert await member.refused("publish", "unibus.room.shared")
    finally:
        await owner.nc.close()
        await member.nc.close()
