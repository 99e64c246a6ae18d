"""The history contract: order, exact bytes, limits, paging, gaps, and the capture fix."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import msgpack
import pytest
from nats.aio.client import Client

from unibus.client import ControlClient, Identity
from unibus.config import Config
from unibus.natsserver import NatsServer
from unibus.runner import Running
from unibus.streams import largest_frame

from harness.plane import StartPlane, plane_starter
from harness.waiting import wait_stored, wait_until


async def publish_core(nc: Client, subject: str, frames: list[bytes]) -> None:
    """Publish the way a browser does: core NATS only, no JetStream API, no acks."""
    for frame in frames:
        await nc.publish(subject, frame)
    await nc.flush()


async def history_json(client: ControlClient, room: str, query: str = "") -> dict:
    data, headers = await client.request_raw(f"{room}.history", query.encode())
    assert headers.get("Content-Type") == "application/json"
    return json.loads(data)


async def test_golden_three_frames_in_order_exact_bytes(nc: Client, as_alice: ControlClient) -> None:
    room = await as_alice.create_room("golden", mode="matrix")
    frames = [b"\x00first\xff", b"second \xe2\x98\x83", bytes(range(256))]
    await publish_core(nc, room["subject"], frames)
    await wait_stored(nc, "UNIBUS_golden", 3)

    envelope = await history_json(as_alice, "golden")
    assert [base64.b64decode(m, validate=True) for m in envelope["messages"]] == frames
    assert (envelope["first_seq"], envelope["last_seq"], envelope["seqs"]) == (1, 3, [1, 2, 3])


async def test_core_nats_publisher_is_captured_from_the_first_message(
    nc: Client, as_alice: ControlClient
) -> None:
    """The central fix: nobody but the control plane ever touched JetStream for this room."""
    room = await as_alice.create_room("capture")
    await publish_core(nc, room["subject"], [b"very first"])
    await wait_stored(nc, "UNIBUS_capture", 1)
    page = await as_alice.history("capture")
    assert page.frames == [b"very first"]


async def test_msgpack_envelope_carries_raw_bytes(nc: Client, as_alice: ControlClient) -> None:
    room = await as_alice.create_room("packed")
    await publish_core(nc, room["subject"], [b"a", b"b"])
    await wait_stored(nc, "UNIBUS_packed", 2)
    data, headers = await as_alice.request_raw("packed.history", b"", {"Accept": "application/msgpack"})
    assert headers["Content-Type"] == "application/msgpack"
    assert msgpack.unpackb(data) == {"messages": [b"a", b"b"], "first_seq": 1, "last_seq": 2, "seqs": [1, 2]}


async def test_empty_room_is_an_empty_list_not_null(as_alice: ControlClient) -> None:
    await as_alice.create_room("quiet")
    data, _ = await as_alice.request_raw("quiet.history")
    assert json.loads(data) == {"messages": []}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", 200),
        ("limit=5", 5),
        ("limit=0", 200),
        ("limit=-3", 200),
        ("limit=abc", 200),
        ("limit=", 200),
        ("limit=1000", 1000),
        ("limit=5000", 1000),
        ("?limit=7", 7),
    ],
)
async def test_limit_default_cap_and_malformed(
    nc: Client, as_alice: ControlClient, query: str, expected: int
) -> None:
    room = await as_alice.create_room("limits")
    await publish_core(nc, room["subject"], [str(i).encode() for i in range(1100)])
    await wait_stored(nc, "UNIBUS_limits", 1100)
    envelope = await history_json(as_alice, "limits", query)
    got = [base64.b64decode(m) for m in envelope["messages"]]
    assert got == [str(i).encode() for i in range(1100 - expected, 1100)]


async def test_before_pages_back_without_overlap(nc: Client, as_alice: ControlClient) -> None:
    room = await as_alice.create_room("pages")
    await publish_core(nc, room["subject"], [str(i).encode() for i in range(25)])
    await wait_stored(nc, "UNIBUS_pages", 25)
    newest = await as_alice.history("pages", limit=10)
    assert newest.frames == [str(i).encode() for i in range(15, 25)]
    assert (newest.first_seq, newest.last_seq) == (16, 25)
    older = await as_alice.history("pages", limit=10, before=newest.first_seq)
    assert older.frames == [str(i).encode() for i in range(5, 15)]
    oldest = await as_alice.history("pages", limit=10, before=older.first_seq)
    assert oldest.frames == [str(i).encode() for i in range(0, 5)]
    assert oldest.first_seq == 1
    nothing = await as_alice.history("pages", limit=10, before=1)
    assert (nothing.frames, nothing.first_seq) == ([], None)


async def test_backlog_iterator_reads_every_frame_once(nc: Client, as_alice: ControlClient) -> None:
    room = await as_alice.create_room("whole")
    sent = [str(i).encode() for i in range(57)]
    await publish_core(nc, room["subject"], sent)
    await wait_stored(nc, "UNIBUS_whole", 57)
    got = [frame async for frame in as_alice.backlog("whole", page_size=10)]
    assert list(reversed(got)) == sent


@pytest.mark.parametrize("before", ["abc", "-1", "0", "1.5", "99999999999999999999999"])
async def test_malformed_before_is_400(as_alice: ControlClient, before: str) -> None:
    from unibus.client import BadRequest

    await as_alice.create_room("badbefore")
    with pytest.raises(BadRequest):
        await as_alice.request_raw("badbefore.history", f"before={before}".encode())


async def test_gaps_are_skipped(nc: Client, as_alice: ControlClient) -> None:
    room = await as_alice.create_room("gappy")
    await publish_core(nc, room["subject"], [b"1", b"2", b"3", b"4", b"5"])
    await wait_stored(nc, "UNIBUS_gappy", 5)
    js = nc.jetstream()
    await js.delete_msg("UNIBUS_gappy", 2)
    await js.delete_msg("UNIBUS_gappy", 5)
    page = await as_alice.history("gappy")
    assert (page.frames, page.seqs) == ([b"1", b"3", b"4"], [1, 3, 4])
    assert (await history_json(as_alice, "gappy"))["seqs"] == [1, 3, 4]  # JSON says the same
    await js.purge_stream("UNIBUS_gappy")
    await publish_core(nc, room["subject"], [b"6"])
    await wait_stored(nc, "UNIBUS_gappy", 1)
    after = await as_alice.history("gappy")
    assert (after.frames, after.seqs) == ([b"6"], [6])


async def test_history_survives_a_go_client_style_stream_update(nc: Client, as_alice: ControlClient) -> None:
    """A Go client's CreateOrUpdateStream sends only name/subject/limits/file: no
    allow_direct, no replicas. History must not depend on what that turns off."""
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig

    room = await as_alice.create_room("goclient")
    js = nc.jetstream()
    info = await js.stream_info("UNIBUS_goclient")
    await js.update_stream(
        StreamConfig(name="UNIBUS_goclient", subjects=[room["subject"]], allow_direct=True)
    )
    await js.update_stream(
        StreamConfig(
            name="UNIBUS_goclient",
            subjects=[room["subject"]],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
        )
    )
    after = await js.stream_info("UNIBUS_goclient")
    assert not after.config.allow_direct
    assert after.config.num_replicas == info.config.num_replicas
    await publish_core(nc, room["subject"], [b"x", b"y"])
    await wait_stored(nc, "UNIBUS_goclient", 2)
    assert (await as_alice.history("goclient")).frames == [b"x", b"y"]
    # The update also dropped the room's limits; that read put them back.
    restored = (await js.stream_info("UNIBUS_goclient")).config
    assert (restored.max_bytes, restored.max_msg_size) == (info.config.max_bytes, info.config.max_msg_size)
    assert restored.max_bytes == Config().room_max_bytes
    assert restored.max_msg_size == largest_frame(nc.max_payload)


async def test_a_lower_room_limit_never_shrinks_a_stream_that_holds_frames(
    tmp_path: Path, nats_server: NatsServer, nc: Client, alice: Identity
) -> None:
    """A room made under a larger `UNIBUS_ROOM_MAX_BYTES` (the former 256 MiB default)
    keeps its reservation and every frame when an instance with a lower one reads it:
    lowering a stream's max_bytes would drop its oldest frames."""
    client = ControlClient(nc, alice)
    async with plane_starter(tmp_path, nats_server) as start:
        await start(room_max_bytes=200_000)
        room = await client.create_room("older")
        for i in range(150):
            await nc.publish(room["subject"], b"%04d" % i * 250)
        await wait_stored(nc, "UNIBUS_older", 150)
    async with plane_starter(tmp_path, nats_server) as start:
        await start(room_max_bytes=100_000)
        page = await client.history("older", limit=1000)
        assert len(page.frames) == 150
        assert (await nc.jetstream().stream_info("UNIBUS_older")).config.max_bytes == 200_000
        await client.create_room("newer")
        assert (await nc.jetstream().stream_info("UNIBUS_newer")).config.max_bytes == 100_000


async def test_a_room_keeps_its_newest_frames_within_its_byte_limit(
    start_plane: StartPlane, nc: Client, alice: Identity
) -> None:
    """Per-room limits: a room's publishers can fill only that room's share of the store,
    and a frame too large for a history page is not stored."""
    await start_plane(room_max_bytes=20_000, room_max_msg_size=2_000)
    client = ControlClient(nc, alice)
    room = await client.create_room("bounded")
    js = nc.jetstream()
    frames = [f"{i:04d}".encode() * 250 for i in range(40)]  # 1,000 bytes each
    await nc.publish(room["subject"], b"x" * 2_001)
    for frame in frames:
        await nc.publish(room["subject"], frame)
    await nc.flush()

    async def all_sequenced() -> bool:
        return (await js.stream_info("UNIBUS_bounded")).state.last_seq >= len(frames)

    await wait_until(all_sequenced, "every frame has its sequence (the oldest dropped for bytes)")
    info = await js.stream_info("UNIBUS_bounded")
    assert info.state.last_seq == len(frames)  # the oversized frame took no sequence
    assert info.state.bytes <= 20_000
    kept = (await client.history("bounded", limit=1000)).frames
    assert kept == frames[-len(kept) :] and 10 <= len(kept) < len(frames)


async def test_history_of_a_room_whose_stream_was_lost_is_backfilled(
    nc: Client, as_alice: ControlClient
) -> None:
    room = await as_alice.create_room("backfill")
    js = nc.jetstream()
    await js.delete_stream("UNIBUS_backfill")
    assert (await as_alice.history("backfill")).frames == []
    await publish_core(nc, room["subject"], [b"after"])
    await wait_stored(nc, "UNIBUS_backfill", 1)
    assert (await as_alice.history("backfill")).frames == [b"after"]


async def test_history_reads_leave_no_consumer_behind(
    nc: Client, as_alice: ControlClient, plane: Running
) -> None:
    room = await as_alice.create_room("noside")
    await publish_core(nc, room["subject"], [b"1", b"2"])
    await wait_stored(nc, "UNIBUS_noside", 2)
    for _ in range(3):
        await as_alice.history("noside")
    js = nc.jetstream()
    import asyncio

    for _ in range(50):
        if (await js.stream_info("UNIBUS_noside")).state.consumer_count == 0:
            break
        await asyncio.sleep(0.02)
    info = await js.stream_info("UNIBUS_noside")
    assert info.state.consumer_count == 0
    assert info.state.messages == 2


async def page_all(client: ControlClient, room_id: str, accept: str) -> list[bytes]:
    """Every frame, by paging back with `before`, in the encoding `accept` names."""
    subject, found, before = f"$UNIBUS.CTL.rooms.{room_id}.history", [], None
    while True:
        query = b"limit=1000" + (b"&before=%d" % before if before else b"")
        body, _ = await client.request_raw(f"{room_id}.history", query, {"Accept": accept})
        assert len(body) <= client.nc.max_payload, subject
        if accept == "application/msgpack":
            page = msgpack.unpackb(body, raw=False)
            frames = list(page["messages"])
        else:
            page = json.loads(body)
            frames = [base64.b64decode(m) for m in page["messages"]]
        found = frames + found
        if not page.get("first_seq") or page["first_seq"] <= 1:
            return found
        before = page["first_seq"]


async def test_pages_are_bounded_in_bytes_and_paging_returns_every_frame_once(
    nc: Client, as_alice: ControlClient
) -> None:
    """300 frames of 8.4 KB: a default page of 200 would be 2.2 MB of JSON, twice the
    payload limit (it used to be a 500). Pages are cut from the old end instead."""
    room = await as_alice.create_room("heavy")
    frames = [(b"%04d" % i) * 2100 for i in range(300)]
    for frame in frames:
        await nc.publish(room["subject"], frame)
    await nc.flush()
    await wait_stored(nc, "UNIBUS_heavy", len(frames))
    default, _ = await as_alice.request_raw("heavy.history", b"")
    page = json.loads(default)
    assert 0 < len(page["messages"]) < 200 and page["last_seq"] == 300
    assert [base64.b64decode(m) for m in page["messages"]] == frames[page["first_seq"] - 1 :]
    for accept in ("application/json", "application/msgpack"):
        assert await page_all(as_alice, "heavy", accept) == frames, accept


async def test_a_huge_read_neither_stalls_other_reads_nor_disconnects_the_service(
    nc: Client, start_plane: StartPlane, alice: Identity
) -> None:
    """40 frames of 700 KB read with limit=1000 (28 MB through the service, one page of
    one frame out) while small reads of another room go on answering."""
    plane = await start_plane(room_max_bytes=32 * 1024 * 1024)  # the room holds all 40
    as_alice = ControlClient(nc, alice)
    big = await as_alice.create_room("big")
    small = await as_alice.create_room("small")
    for i in range(40):
        await nc.publish(big["subject"], bytes([i]) * 700_000)
        await nc.flush()
    await nc.publish(small["subject"], b"tiny")
    await wait_stored(nc, "UNIBUS_big", 40)
    await wait_stored(nc, "UNIBUS_small", 1)
    reconnects = plane.nc.stats["reconnects"]

    async def small_reads() -> int:
        answered = 0
        for _ in range(20):
            assert (await as_alice.history("small")).frames == [b"tiny"]
            answered += 1
        return answered

    pages = [
        as_alice.request_raw("big.history", b"limit=1000", {"Accept": "application/msgpack"})
        for _ in range(3)
    ]
    results = await asyncio.gather(*pages, small_reads())
    assert results[-1] == 20
    for body, _ in results[:-1]:  # type: ignore[misc]
        page = msgpack.unpackb(body, raw=False)
        assert page["messages"] == [bytes([39]) * 700_000] and page["first_seq"] == 40
    assert plane.nc.is_connected and plane.nc.stats["reconnects"] == reconnects


async def test_after_pages_forwards_without_overlap_and_names_the_streams_end(
    nc: Client, as_alice: ControlClient
) -> None:
    """A follower's catch-up read: frames after a cursor, oldest first, and the stream's
    last sequence, so it knows when it has caught up."""
    room = await as_alice.create_room("forward")
    await publish_core(nc, room["subject"], [str(i).encode() for i in range(25)])
    await wait_stored(nc, "UNIBUS_forward", 25)
    first = await as_alice.history("forward", limit=10, after=0)
    assert first.frames == [str(i).encode() for i in range(10)]
    assert (first.first_seq, first.last_seq, first.seqs, first.stream_last_seq) == (
        1,
        10,
        list(range(1, 11)),
        25,
    )
    second = await as_alice.history("forward", limit=10, after=first.last_seq)
    assert (second.seqs, second.stream_last_seq) == (list(range(11, 21)), 25)
    last = await as_alice.history("forward", limit=10, after=second.last_seq)
    assert (last.frames, last.last_seq) == ([str(i).encode() for i in range(20, 25)], 25)
    caught_up = await history_json(as_alice, "forward", "after=25")
    assert caught_up == {"messages": [], "stream_last_seq": 25}
    assert (await history_json(as_alice, "forward", "after=30")) == {"messages": [], "stream_last_seq": 25}
    # Without `after` the reply is what it always was: no new field for older peers.
    assert "stream_last_seq" not in await history_json(as_alice, "forward", "limit=1")


async def test_after_shows_what_retention_dropped(nc: Client, as_alice: ControlClient) -> None:
    """Frames the stream no longer holds are not silently skipped: the page starts above
    the cursor (or is empty below the stream's end), which a follower reports as a gap."""
    room = await as_alice.create_room("dropped")
    await publish_core(nc, room["subject"], [b"1", b"2", b"3", b"4"])
    await wait_stored(nc, "UNIBUS_dropped", 4)
    js = nc.jetstream()
    await js.purge_stream("UNIBUS_dropped", keep=2)
    page = await as_alice.history("dropped", after=1)
    assert (page.frames, page.seqs, page.first_seq, page.stream_last_seq) == ([b"3", b"4"], [3, 4], 3, 4)
    await js.purge_stream("UNIBUS_dropped")
    assert (await history_json(as_alice, "dropped", "after=2")) == {"messages": [], "stream_last_seq": 4}


async def test_after_on_an_empty_or_ephemeral_room_names_its_end(as_alice: ControlClient) -> None:
    await as_alice.create_room("fresh")
    await as_alice.create_room("passing", mode="ephemeral")
    assert (await history_json(as_alice, "fresh", "after=0")) == {"messages": [], "stream_last_seq": 0}
    assert (await history_json(as_alice, "passing", "after=0")) == {"messages": [], "stream_last_seq": 0}


@pytest.mark.parametrize("query", ["after=abc", "after=-1", "after=1.5", "after=999999999999999999999"])
async def test_malformed_after_is_400(as_alice: ControlClient, query: str) -> None:
    from unibus.client import BadRequest

    await as_alice.create_room("badafter")
    with pytest.raises(BadRequest, match="after must be a stream sequence"):
        await as_alice.request_raw("badafter.history", query.encode())


async def test_after_with_before_is_400(as_alice: ControlClient) -> None:
    from unibus.client import BadRequest

    await as_alice.create_room("bothways")
    with pytest.raises(BadRequest, match="after and before cannot be combined"):
        await as_alice.request_raw("bothways.history", b"after=1&before=5")


async def test_after_pages_are_bounded_in_bytes_from_their_new_end(
    nc: Client, as_alice: ControlClient
) -> None:
    """Frames of 300 KB: a forward page of 10 would be 4 MB of JSON. It keeps the oldest
    that fit, `last_seq` moves down to the newest kept, and `after=last_seq` goes on
    with no frame lost or repeated, in either encoding."""
    room = await as_alice.create_room("heavyforward")
    frames = [bytes([i]) * 300_000 for i in range(12)]
    for frame in frames:
        await nc.publish(room["subject"], frame)
        await nc.flush()
    await wait_stored(nc, "UNIBUS_heavyforward", len(frames))
    for accept in ("application/json", "application/msgpack"):
        got: list[bytes] = []
        cursor = 0
        while cursor < len(frames):
            data, _ = await as_alice.request_raw(
                "heavyforward.history", f"after={cursor}&limit=10".encode(), {"Accept": accept}
            )
            assert len(data) <= nc.max_payload
            page = msgpack.unpackb(data) if "msgpack" in accept else json.loads(data)
            messages = (
                page["messages"] if "msgpack" in accept else [base64.b64decode(m) for m in page["messages"]]
            )
            assert 0 < len(messages) < 10 and page["seqs"][0] == cursor + 1, accept
            assert page["last_seq"] == page["seqs"][-1] and page["stream_last_seq"] == len(frames)
            got.extend(messages)
            cursor = page["last_seq"]
        assert got == frames, accept


async def test_a_stream_made_before_republish_gets_it_on_its_next_read(
    nc: Client, as_alice: ControlClient
) -> None:
    """Rooms created before live frames carried their sequence: the stream is updated in
    place (every frame kept), and from then on each stored frame is republished."""
    room = await as_alice.create_room("older")
    js = nc.jetstream()
    config = (await js.stream_info("UNIBUS_older")).config
    config.republish = None
    await js.update_stream(config)
    assert (await js.stream_info("UNIBUS_older")).config.republish is None
    await publish_core(nc, room["subject"], [b"kept"])
    await wait_stored(nc, "UNIBUS_older", 1)
    assert (await as_alice.history("older", after=0)).frames == [b"kept"]
    republish = (await js.stream_info("UNIBUS_older")).config.republish
    assert republish is not None and (republish.src, republish.dest) == (
        room["subject"],
        room["subject"] + ".stored",
    )
    live = await nc.subscribe(room["subject"] + ".stored")
    await publish_core(nc, room["subject"], [b"next"])
    msg = await live.next_msg(timeout=5)
    assert (msg.data, msg.headers and msg.headers["Nats-Sequence"]) == (b"next", "2")
    assert [m async for m in as_alice.backlog("older")] == [b"next", b"kept"]
