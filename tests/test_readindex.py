"""Freshness shared, not skipped: concurrent reads share their STREAM.INFO requests
(service/unibus/readindex.py), and a read still sees what was stored before it arrived."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import nats.errors
from nats.aio.client import Client

from unibus.client import ControlClient
from unibus.wire.interest import confirm_interest
from unibus.wire.names import ROOM_BUCKET

from harness.waiting import wait_stored

READS = 24


async def test_concurrent_reads_share_their_stream_info_requests(nc: Client, as_alice: ControlClient) -> None:
    room = await as_alice.create_room("busy", mode="matrix")
    frames = [b"frame %d" % i for i in range(5)]
    for frame in frames:
        await nc.publish(room["subject"], frame)
    await wait_stored(nc, room["stream"], len(frames))
    # Observing, not mocking: the inspector sees every JetStream request the service sends.
    infos = await nc.subscribe("$JS.API.STREAM.INFO.>")
    await confirm_interest(nc)

    pages = await asyncio.gather(*(as_alice.history("busy", limit=5) for _ in range(READS)))
    assert all(page.frames == frames for page in pages)

    seen: Counter[str] = Counter()
    with contextlib.suppress(nats.errors.TimeoutError):
        while True:
            msg = await infos.next_msg(timeout=0.5)
            seen[msg.subject.removeprefix("$JS.API.STREAM.INFO.")] += 1
    # One request per read without the sharing; a few rounds with it.
    assert 1 <= seen[room["stream"]] <= READS // 2, seen
    assert 1 <= seen[f"KV_{ROOM_BUCKET}"] <= READS // 2, seen


async def test_a_read_sees_every_frame_stored_before_it_arrived(nc: Client, as_alice: ControlClient) -> None:
    """Reads keep coming while frames are appended: each read that starts after a frame
    was stored returns it, however the reads were batched."""
    room = await as_alice.create_room("fresh", mode="matrix")

    async def background() -> None:
        while True:
            await as_alice.history("fresh", limit=3)

    readers = [asyncio.create_task(background()) for _ in range(8)]
    try:
        for i in range(1, 21):
            await nc.publish(room["subject"], b"%d" % i)
            await wait_stored(nc, room["stream"], i)
            page = await as_alice.history("fresh", limit=1)
            assert page.frames == [b"%d" % i]
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
