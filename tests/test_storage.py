"""Storage isolation: room traffic can fill only what rooms reserved in the JetStream
store; the control plane's own state (room bucket, nonce stream) keeps working."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import APIError, NotFoundError

from unibus.callout.keys import BoundaryKeys
from unibus.client import ControlClient, Identity, InsufficientStorage, TooMany
from unibus.config import Config
from unibus.natsserver import NatsServer
from unibus.wire.names import CREATIONS_STREAM, NONCE_STREAM, ROOM_BUCKET

from harness.boundary import bounded_spec, connect_inspector
from harness.plane import StartPlane, plane_starter
from harness.waiting import wait_until

MIB = 1024 * 1024


@pytest.fixture
async def small_store(
    tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity
) -> AsyncIterator[tuple[NatsServer, Client]]:
    """A boundary server whose JetStream store holds 7 MiB in all."""
    spec = bounded_spec(tmp_path / "small", boundary_keys, inspector, max_file_store=7 * MIB)
    server = NatsServer(spec).start()
    nc = await connect_inspector(server.url, inspector)
    yield server, nc
    await nc.close()
    server.stop()


async def fill(nc: Client, subject: str, stream: str, limit: int) -> None:
    """Publish 1.5x a room's byte limit over core NATS, until the stream is at its limit.
    Small frames leave only a sliver of its reservation unused."""
    frame = b"f" * 2_000
    for _ in range(limit * 3 // 2 // len(frame)):
        await nc.publish(subject, frame)
    await nc.flush()
    js = nc.jetstream()

    async def full() -> bool:
        return (await js.stream_info(stream)).state.bytes > limit - 2 * len(frame)

    await wait_until(full, f"{stream} fills up")


async def test_rooms_filling_the_store_leave_the_control_plane_working(
    tmp_path: Path, small_store: tuple[NatsServer, Client], alice: Identity, bob: Identity
) -> None:
    server, nc = small_store
    async with plane_starter(tmp_path, server) as start:
        await start(room_max_bytes=MIB, bucket_max_bytes=MIB, nonces_max_bytes=MIB)
        as_alice = ControlClient(nc, alice)
        js = nc.jetstream()
        assert (await js.stream_info(f"KV_{ROOM_BUCKET}")).config.max_bytes == MIB
        assert (await js.stream_info(NONCE_STREAM)).config.max_bytes == MIB

        # Rooms are created while their reservation fits next to the control plane's own.
        created: list[str] = []
        with pytest.raises(InsufficientStorage, match="nothing was created"):
            for i in range(10):
                created.append((await as_alice.create_room(f"r{i}", encrypted=False))["id"])
        assert len(created) == 4  # 7 MiB: 1 bucket + 1 nonces + 1 creation counts + 4 rooms of 1 MiB
        assert [room["id"] for room in await as_alice.list_rooms()] == created

        # Every room's publishers fill it, and then some: the store is full.
        for room_id in created:
            await fill(nc, f"unibus.room.{room_id}", f"UNIBUS_{room_id}", MIB)

        # Signed requests (each a nonce write), row writes and reads still answer, well
        # past the few KiB the rooms left unused.
        for _ in range(200):
            await as_alice.info("r1")
        await as_alice.add_member("r0", bob.public_key)
        assert (await ControlClient(nc, bob).info("r0"))["role"] == "member"
        for room_id in created:
            page = await as_alice.history(room_id, limit=10)
            assert len(page.frames) == 10
        await as_alice.remove_member("r0", bob.public_key)

        # Deleting a room frees its reservation for the next one.
        await as_alice.delete_room("r3")
        await as_alice.create_room("again", encrypted=False)


async def test_state_made_before_reservations_gets_them(start_plane: StartPlane, nc: Client) -> None:
    """An existing deployment's bucket and nonce stream (no max_bytes) are given their
    reservation when an instance of this version starts."""
    js = nc.jetstream()
    await js.create_key_value(KeyValueConfig(bucket=ROOM_BUCKET, history=1))
    await js.add_stream(StreamConfig(name=NONCE_STREAM, subjects=["$UNIBUS.CTL.nonces"], max_age=240))
    await start_plane()
    assert (await js.stream_info(f"KV_{ROOM_BUCKET}")).config.max_bytes == Config().bucket_max_bytes
    assert (await js.stream_info(NONCE_STREAM)).config.max_bytes == Config().nonces_max_bytes


async def test_an_instance_starts_on_a_store_that_rooms_hold_whole(
    tmp_path: Path, small_store: tuple[NatsServer, Client], alice: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment from before the creation counts, whose rooms reserve the whole store:
    a new instance still starts (JetStream refuses even an add of an existing stream's
    own config there), counts creations in memory, and says why."""
    server, nc = small_store
    js = nc.jetstream()
    async with plane_starter(tmp_path, server) as start:
        await start(room_max_bytes=MIB, bucket_max_bytes=MIB, nonces_max_bytes=MIB)
    await js.delete_stream(CREATIONS_STREAM)
    with pytest.raises(APIError, match="insufficient storage"):  # rooms of before take it all
        for i in range(10):
            await js.add_stream(StreamConfig(name=f"UNIBUS_old{i}", subjects=[f"old.{i}"], max_bytes=MIB))
    async with plane_starter(tmp_path, server) as start:
        await start(room_max_bytes=MIB, bucket_max_bytes=MIB, nonces_max_bytes=MIB, creates_per_second=0.1)
        with pytest.raises(NotFoundError):
            await js.stream_info(CREATIONS_STREAM)
        assert any("counted per instance" in r.getMessage() for r in caplog.records)
        as_alice = ControlClient(nc, alice)
        with pytest.raises(TooMany):
            for _ in range(51):
                await as_alice.create_room(mode="ephemeral", encrypted=False)
