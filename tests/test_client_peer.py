"""End-to-end encrypted rooms through the peer library, on a real nats-server and service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import nats
import pytest

from unibus.client import Forbidden, Identity, Message, Peer, Reason, Rejected, RoomView
from unibus.client import frames as frame_codec
from unibus.client.peer import LiveMessages
from unibus.identity import inbox_prefix
from unibus.natsserver import NatsServer
from unibus.runner import Running
from unibus.wire.interest import confirm_interest

from harness.boundary import connect_as, reauthorize
from harness.plane import StartPlane
from harness.waiting import wait_history


@pytest.fixture
async def peers(nats_server: NatsServer, plane: Running) -> AsyncIterator[list[Peer]]:
    """Three peers (alice, bob, carol), each connected as itself like separate processes,
    under the trust boundary."""
    identities = [Identity.generate() for _ in range(3)]
    conns = [(await connect_as(nats_server.url, identity)).nc for identity in identities]
    yield [Peer(nc, identity) for nc, identity in zip(conns, identities, strict=True)]
    for nc in conns:
        await nc.close()


@pytest.fixture
async def open_peers(open_nats_server: NatsServer, start_plane: StartPlane) -> AsyncIterator[list[Peer]]:
    """The same three on a server without the boundary: where end-to-end encryption has
    to hold on its own (a removed member who still hears the subject)."""
    await start_plane(nats_url=open_nats_server.url)
    conns = [await nats.connect(open_nats_server.url) for _ in range(3)]
    yield [Peer(nc, Identity.generate()) for nc in conns]
    for nc in conns:
        await nc.close()


async def add(owner: Peer, member: Peer, room_id: str) -> None:
    """Add `member` and have its connection re-authorize to take the room up (a grant cuts
    nobody; a subscription sent before that is refused)."""
    await owner.add_member(room_id, member.identity.public_key)
    if member.nc.new_inbox().startswith(inbox_prefix(member.identity.public_key)):
        await reauthorize(member.nc)  # else an open server (open_peers): nothing to take up


async def next_live(live: LiveMessages) -> Message | Rejected:
    return await asyncio.wait_for(live.__anext__(), 10)


async def shared_room(alice: Peer, bob: Peer, room_id: str) -> tuple[RoomView, RoomView]:
    room = await alice.create_room(room_id)
    await add(alice, bob, room_id)
    return room, await bob.room(room_id)


async def test_encrypted_round_trip_via_history_and_live(peers: list[Peer]) -> None:
    alice, bob, _ = peers
    a_room, b_room = await shared_room(alice, bob, "secret")
    assert a_room.encrypted and a_room.epoch == 1
    async with b_room.subscribe() as live:
        sent = [await a_room.publish(f"hello {i}".encode()) for i in range(3)]
        await confirm_interest(alice.nc)
        got = [await next_live(live) for _ in range(3)]
    assert [m.text for m in got if isinstance(m, Message)] == ["hello 0", "hello 1", "hello 2"]
    assert all(isinstance(m, Message) and m.sender == alice.identity.public_key for m in got)
    assert [m.id for m in got if isinstance(m, Message)] == [f.id for f in sent]

    await wait_history(alice.control, "secret", 3)
    page = await b_room.history()
    assert [m.text for m in page.messages if isinstance(m, Message)] == ["hello 0", "hello 1", "hello 2"]
    assert (page.first_seq, page.last_seq) == (1, 3)
    # What the service stored is ciphertext: the plaintext appears nowhere in it.
    raw = (await bob.control.history("secret")).frames
    assert all(b"hello" not in frame for frame in raw)


async def test_non_member_sees_only_ciphertext_it_cannot_open(open_peers: list[Peer]) -> None:
    """Without the boundary anyone can subscribe to a room's subject: what they get is
    ciphertext they cannot open. (Under the boundary the server refuses the subscription.)"""
    alice, bob, carol = open_peers
    a_room, _ = await shared_room(alice, bob, "private")
    eavesdrop = await carol.nc.subscribe(a_room.subject)
    await confirm_interest(carol.nc)
    await a_room.publish(b"for members only")
    await confirm_interest(alice.nc)
    raw = (await eavesdrop.next_msg(timeout=10)).data
    frame = frame_codec.decode(raw)
    assert b"for members only" not in raw and frame.epoch == 1
    with pytest.raises(Forbidden):
        await carol.control.sealed_keys("private")
    with pytest.raises(Forbidden):
        await carol.room("private")
    # Even with the room's public info in hand, carol has no key to open it with.
    outsider = RoomView(carol, "private")
    outsider.info = dict(a_room.info)
    outsider.members = set(a_room.members)
    opened = await outsider.open(raw)
    assert isinstance(opened, Rejected) and opened.reason is Reason.NO_KEY
    wrong_key = bytes(32)
    with pytest.raises(frame_codec.FrameRejected) as err:
        frame_codec.decrypt(frame, wrong_key)
    assert err.value.reason is Reason.DECRYPT_FAILED


async def test_tampered_forged_and_outsider_frames_are_rejected_with_a_reason(peers: list[Peer]) -> None:
    alice, bob, carol = peers
    a_room, b_room = await shared_room(alice, bob, "guarded")
    good = frame_codec.seal_frame(
        alice.identity, "guarded", b"genuine", ts_ms=1, epoch=1, room_key=a_room.current_key()
    )
    assert isinstance(await b_room.open(good.encode()), Message)

    flipped = bytearray(good.body)
    flipped[0] ^= 1
    tampered = replace(good, body=bytes(flipped))
    forged = frame_codec.seal_frame(  # carol signs, but claims to be alice
        carol.identity, "guarded", b"it is me, alice", ts_ms=2, epoch=1, room_key=a_room.current_key()
    )
    forged = replace(forged, sender=alice.identity.public_key)
    outsider = frame_codec.seal_frame(
        carol.identity, "guarded", b"let me in", ts_ms=3, epoch=1, room_key=a_room.current_key()
    )
    other_room = frame_codec.seal_frame(
        alice.identity, "elsewhere", b"replayed", ts_ms=4, epoch=1, room_key=a_room.current_key()
    )
    plaintext = frame_codec.seal_frame(alice.identity, "guarded", b"downgrade", ts_ms=5)
    cases = [
        (tampered.encode(), Reason.BAD_SIGNATURE),
        (forged.encode(), Reason.BAD_SIGNATURE),
        (outsider.encode(), Reason.NOT_MEMBER),
        (other_room.encode(), Reason.BAD_SIGNATURE),
        (plaintext.encode(), Reason.PLAINTEXT_IN_ENCRYPTED_ROOM),
        (b"\xc1 not msgpack", Reason.MALFORMED),
        (b"\x93\x01\x02\x03", Reason.MALFORMED),
    ]
    for raw, reason in cases:
        opened = await b_room.open(raw)
        assert isinstance(opened, Rejected), raw
        assert opened.reason is reason, (reason, opened)
        assert opened.detail or reason in (Reason.PLAINTEXT_IN_ENCRYPTED_ROOM,)

    # The same rejections arrive through history: the service stores what it is sent.
    for raw, _ in cases:
        await alice.nc.publish(a_room.subject, raw)
    await a_room.publish(b"still fine")
    await alice.nc.flush()
    await wait_history(alice.control, "guarded", len(cases) + 1)
    page = await b_room.history()
    assert [m.reason for m in page.messages if isinstance(m, Rejected)] == [r for _, r in cases]
    assert [m.text for m in page.messages if isinstance(m, Message)] == ["still fine"]


async def test_removal_rotates_the_key_and_locks_the_removed_member_out(open_peers: list[Peer]) -> None:
    """Without the boundary a removed member still hears the subject: the new key epoch
    is what keeps it out. (Under the boundary the server refuses it the subject as well:
    test_boundary.py.)"""
    alice, bob, carol = open_peers
    a_room = await alice.create_room("rotating")
    for peer in (bob, carol):
        await alice.add_member("rotating", peer.identity.public_key)
    b_room, c_room = await bob.room("rotating"), await carol.room("rotating")
    await a_room.publish(b"before removal")
    # Sent, not just queued: nats-py's flush() can overtake a queued publish (interest.py),
    # and Carol's subscription below once received this frame in CI.
    await confirm_interest(alice.nc)

    async with c_room.subscribe() as carol_live:
        summary = await alice.remove_member("rotating", carol.identity.public_key)
        assert summary["key_epoch"] == 2
        await a_room.refresh()
        assert a_room.epoch == 2 and set(a_room.keys) == {1, 2}
        await a_room.publish(b"after removal")
        await alice.nc.flush()
        # Carol still holds the epoch-1 key and hears the subject, but cannot open epoch 2.
        after = await next_live(carol_live)
    assert isinstance(after, Rejected) and after.reason is Reason.NO_KEY
    assert set(c_room.keys) == {1}
    with pytest.raises(frame_codec.FrameRejected):
        frame_codec.decrypt(frame_codec.decode(after.raw), c_room.keys[1])
    with pytest.raises(Forbidden):
        await carol.control.sealed_keys("rotating")

    await wait_history(alice.control, "rotating", 2)
    page = await b_room.history()  # bob refreshes to epoch 2 on the first epoch-2 frame
    assert [(m.epoch, m.text) for m in page.messages if isinstance(m, Message)] == [
        (1, "before removal"),
        (2, "after removal"),
    ]


async def test_added_member_reads_from_the_current_epoch(peers: list[Peer]) -> None:
    alice, bob, _ = peers
    a_room = await alice.create_room("latecomer")
    await alice.rotate_key("latecomer")
    await a_room.refresh()
    await a_room.publish(b"epoch two")
    await add(alice, bob, "latecomer")
    await alice.nc.flush()
    await wait_history(alice.control, "latecomer", 1)
    b_room = await bob.room("latecomer")
    assert set(b_room.keys) == {2}
    assert [m.text for m in (await b_room.history()).messages if isinstance(m, Message)] == ["epoch two"]


async def test_plain_room_round_trip(peers: list[Peer]) -> None:
    alice, bob, _ = peers
    room = await alice.create_room("open", encrypted=False)
    await add(alice, bob, "open")
    await bob.publish("open", b"in the clear")
    await wait_history(alice.control, "open", 1)
    [msg] = (await room.history()).messages
    assert isinstance(msg, Message) and msg.text == "in the clear" and msg.epoch == 0
    assert msg.sender == bob.identity.public_key


async def test_paging_2500_messages_returns_each_once_in_order(peers: list[Peer]) -> None:
    alice, bob, _ = peers
    a_room, b_room = await shared_room(alice, bob, "long")
    total = 2500
    for i in range(total):
        await a_room.publish(str(i).encode())
    await alice.nc.flush()
    await wait_history(alice.control, "long", total)

    seen: list[str] = []
    before: int | None = None
    with contextlib.suppress(StopAsyncIteration):
        for _ in range(total):  # bounded: at most one page per message
            page = await b_room.history(limit=300, before=before)
            seen[:0] = [m.text for m in page.messages if isinstance(m, Message)]
            assert len(page.messages) == len([m for m in page.messages if isinstance(m, Message)])
            if page.first_seq is None or page.first_seq <= 1:
                break
            before = page.first_seq
    assert seen == [str(i) for i in range(total)]

    newest_first = [m async for m in b_room.backlog(page_size=1000)]
    assert [m.text for m in reversed(newest_first) if isinstance(m, Message)] == seen
