"""`ControlClient` across a cut and a 503: a read whose reply was lost, or that was
answered 503, is sent again, freshly signed; a change is reported, never sent twice."""

from __future__ import annotations

import asyncio
import contextlib

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from unibus.client import ControlClient, Identity, Peer, ReplyLost, Unavailable, connect
from unibus.natsserver import NatsServer
from unibus.wire.interest import confirm_interest
from unibus.wire.names import ERROR_CODE_HEADER, ERROR_HEADER

from harness.plane import StartPlane
from harness.waiting import wait_stored


@contextlib.asynccontextmanager
async def stand_in(url: str, subject: str, answer_from: int, unavailable: str | None = None):
    """A control plane that answers `subject` only from its `answer_from`-th request on,
    recording every request. The requests before it get no reply (as a cut loses one),
    or with `unavailable` a 503 with that description."""
    nc = await nats.connect(url)
    seen: list[Msg] = []

    async def on_request(msg: Msg) -> None:
        seen.append(msg)
        if len(seen) >= answer_from:
            await msg.respond(b'{"rooms": []}')
        elif unavailable is not None:
            await nc.publish(msg.reply, b"", headers={ERROR_CODE_HEADER: "503", ERROR_HEADER: unavailable})

    await nc.subscribe(subject, cb=on_request)
    await confirm_interest(nc)
    try:
        yield seen
    finally:
        await nc.close()


async def cut_while_pending(client: ControlClient, seen: list[Msg], call: asyncio.Task) -> None:
    """Once the request reached the stand-in, cut the client's connection."""
    for _ in range(500):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert seen and not call.done()
    await client.nc.force_reconnect()


async def test_a_read_whose_reply_a_cut_lost_is_sent_again_with_a_fresh_signature(
    open_nats_server: NatsServer, alice: Identity
) -> None:
    nc = await connect(open_nats_server.url, alice)
    client = ControlClient(nc, alice, timeout_s=10)
    try:
        async with stand_in(open_nats_server.url, "$UNIBUS.CTL.rooms.list", answer_from=2) as seen:
            listing = asyncio.create_task(client.list_rooms())
            await cut_while_pending(client, seen, listing)
            assert await asyncio.wait_for(listing, 5) == []
        assert len(seen) == 2
        first, again = (m.headers or {} for m in seen)
        assert first["Unibus-Nonce"] != again["Unibus-Nonce"]  # a nonce is single-use
        assert first["Unibus-Signature"] != again["Unibus-Signature"]
    finally:
        await nc.close()


async def test_a_change_whose_reply_a_cut_lost_is_reported_not_sent_again(
    open_nats_server: NatsServer, alice: Identity
) -> None:
    """A second `create` would be a 409 for a room that may be ours, a second `key.rotate`
    a second rotation: the caller is told, and reads before deciding."""
    nc = await connect(open_nats_server.url, alice)
    client = ControlClient(nc, alice, timeout_s=2)
    try:
        async with stand_in(open_nats_server.url, "$UNIBUS.CTL.rooms.create", answer_from=99) as seen:
            creating = asyncio.create_task(client.create_room("mine"))
            await cut_while_pending(client, seen, creating)
            with pytest.raises(ReplyLost, match="may or may not have been applied") as lost:
                await asyncio.wait_for(creating, 10)
        assert lost.value.code == 504
        assert len(seen) == 1
    finally:
        await nc.close()


async def test_a_read_answered_503_is_sent_again_until_it_is_answered(
    open_nats_server: NatsServer, alice: Identity
) -> None:
    """docs/protocol.md: after a 503 "retrying with a fresh signature is right in every
    case"; a read does it itself, within its timeout."""
    nc = await connect(open_nats_server.url, alice)
    client = ControlClient(nc, alice, timeout_s=10)
    try:
        busy = "data plane unavailable, try again"
        async with stand_in(open_nats_server.url, "$UNIBUS.CTL.rooms.list", 4, busy) as seen:
            assert await client.list_rooms() == []
        assert len(seen) == 4
        assert len({(m.headers or {})["Unibus-Nonce"] for m in seen}) == 4
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("suffix", "description", "timeout_s"),
    [
        ("create", "room storage unavailable, try again", 10),  # a change: the caller decides
        (
            "list",
            "replay protection resumes after a restore: requests signed before"
            " 2099-01-01T00:00:00+00:00 are refused; sign again then",
            10,
        ),  # minutes away: the CLI waits
        ("list", "data plane unavailable, try again", 2),  # a read, out of time (0, .1, .3, .7, 1.5 s)
    ],
)
async def test_a_503_that_retrying_would_not_cure_in_time_is_raised(
    open_nats_server: NatsServer, alice: Identity, suffix: str, description: str, timeout_s: float
) -> None:
    nc = await connect(open_nats_server.url, alice)
    client = ControlClient(nc, alice, timeout_s=timeout_s)
    try:
        async with stand_in(open_nats_server.url, f"$UNIBUS.CTL.rooms.{suffix}", 99, description) as seen:
            with pytest.raises(Unavailable, match=description[:20]):
                await client.call(suffix, {} if suffix == "create" else None)
        retried = suffix == "list" and "try again" in description
        assert len(seen) >= 2 if retried else len(seen) == 1, len(seen)
    finally:
        await nc.close()


async def test_a_read_in_flight_when_nats_dies_is_answered_after_the_restart(
    nats_server: NatsServer, start_plane: StartPlane, nc: Client, alice: Identity
) -> None:
    """The real service and a real crash: NATS is killed with a history read in flight
    (the request or its reply dies with it) and started again; the read is answered."""
    await start_plane()
    peer = await Peer.connect(nats_server.url, alice)
    peer.control.timeout_s = 20
    try:
        room = await peer.create_room("crashed", encrypted=False)
        await room.publish(b"stored before the crash")
        await peer.nc.flush()
        await wait_stored(nc, "UNIBUS_crashed", 1)
        reading = asyncio.create_task(peer.control.history("crashed"))
        await asyncio.sleep(0)  # the request is on its way
        await asyncio.to_thread(nats_server.kill)
        await asyncio.to_thread(nats_server.start)
        page = await asyncio.wait_for(reading, 30)
        assert len(page.frames) == 1
    finally:
        await peer.nc.close()
