"""Backup and restore, for real: rooms with members and frames are saved by `unibus backup`
while the control plane runs, restored by `unibus restore` into a brand-new nats-server,
and the control plane started on it finds every row and frame as it was."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js.api import RawStreamMsg

from unibus.auth.replay import RESTORED_MARK, nonce_stream_config
from unibus.callout.keys import BoundaryKeys
from unibus.client import ControlClient, Identity, Unavailable
from unibus.config import Config
from unibus.natsserver import NatsServer
from unibus.operations.backup import BackupError, new_directory
from unibus.storage import Room, SqliteStore
from unibus.storage.rooms import Role
from unibus.wire.names import NONCE_STREAM, ROOM_BUCKET
from unibus.wire.signing import sign_request

from harness.boundary import bounded_spec, connect_inspector
from harness.cli import clean_env, unibus
from harness.cluster import Cluster, connect_all
from harness.plane import plane_starter
from harness.waiting import wait_stored, wait_until


def cli_env(url: str, keys_dir: Path | None = None) -> dict[str, str]:
    """What an operator sets: where NATS is and the control plane's keys, nothing more."""
    keys = {"UNIBUS_KEYS_DIR": str(keys_dir)} if keys_dir else {}
    return clean_env(UNIBUS_NATS_URL=url, **keys)


@contextlib.asynccontextmanager
async def two_servers(
    tmp_path: Path, keys: BoundaryKeys, inspector: Identity
) -> AsyncIterator[tuple[NatsServer, NatsServer, Client, Client]]:
    """The server a backup is taken from and an empty one to restore it into, both on the
    shipped boundary, with the suite's inspector connected to each."""
    old = NatsServer(bounded_spec(tmp_path / "old", keys, inspector)).start()
    new = NatsServer(bounded_spec(tmp_path / "new", keys, inspector)).start()
    nc_old = await connect_inspector(old.url, inspector)
    nc_new = await connect_inspector(new.url, inspector)
    try:
        yield old, new, nc_old, nc_new
    finally:
        await nc_old.close()
        await nc_new.close()
        old.stop()
        new.stop()


async def stream_messages(nc: Client, stream: str) -> list[tuple[int, bytes, dict[str, str] | None]]:
    """Every message the stream holds, with its sequence: deleted ones are absent."""
    js = nc.jetstream()
    state = (await js.stream_info(stream)).state
    held: list[tuple[int, bytes, dict[str, str] | None]] = []
    for seq in range(max(1, state.first_seq), state.last_seq + 1):
        try:
            msg: RawStreamMsg = await js.get_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            continue
        held.append((seq, msg.data or b"", msg.headers))
    return held


async def rows(nc: Client) -> dict[str, bytes]:
    kv = await nc.jetstream().key_value(ROOM_BUCKET)
    return {key: (await kv.get(key)).value or b"" for key in await kv.keys()}


async def all_pages(client: ControlClient, room_id: str) -> list[tuple[list[bytes], int | None]]:
    """History as a peer pages through it, oldest page last."""
    pages = []
    before = None
    while True:
        page = await client.history(room_id, limit=50, before=before)
        pages.append((page.frames, page.first_seq))
        if not page.frames or page.first_seq is None or page.first_seq <= 1:
            return pages
        before = page.first_seq


async def state_of(nc: Client, client: ControlClient, room_ids: list[str]) -> dict[str, Any]:
    streams = {r: await stream_messages(nc, f"UNIBUS_{r}") for r in room_ids}
    return {
        "rows": await rows(nc),
        "streams": streams,
        "history": {r: await all_pages(client, r) for r in room_ids},
        "info": {r: await client.info(r) for r in room_ids},
    }


async def test_backup_wipe_restore_brings_every_room_and_frame_back(
    tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity, alice: Identity, bob: Identity
) -> None:
    keys_dir = tmp_path / "keys"
    async with two_servers(tmp_path, boundary_keys, inspector) as (old, new, nc_old, nc_new):
        async with plane_starter(tmp_path, old) as start:
            await start(clock_skew_s=60.0)
            as_alice = ControlClient(nc_old, alice)
            # A room longer than one history page (limit 50 here, 200 by default), one with
            # a member, deletions and a purge, one with nothing in it, and an ephemeral room.
            await as_alice.create_room("long", encrypted=False)
            await as_alice.create_room("gaps", encrypted=False)
            await as_alice.create_room("quiet", encrypted=False)
            await as_alice.create_room("passing", mode="ephemeral", encrypted=False)
            await as_alice.add_member("gaps", bob.public_key)
            for i in range(230):
                await nc_old.publish("unibus.room.long", f"long {i}".encode() * (1 + i % 7))
            for i in range(20):
                await nc_old.publish("unibus.room.gaps", bytes([i]) * 100)
            await wait_stored(nc_old, "UNIBUS_long", 230)
            await wait_stored(nc_old, "UNIBUS_gaps", 20)
            js = nc_old.jetstream()
            await js.purge_stream("UNIBUS_gaps", seq=4)  # 1-3 gone
            for seq in (7, 8, 15):
                await js.delete_msg("UNIBUS_gaps", seq)
            persisted = ["gaps", "long", "quiet"]
            before = await state_of(nc_old, as_alice, persisted)

            # Online: the control plane keeps serving while the backup runs.
            code, out = await unibus("backup", str(tmp_path / "backup"), env=cli_env(old.url, keys_dir))
            assert code == 0, out
            assert f"3 room streams ({230 + 14} frames" in out, out

            # A request accepted after the backup: its replay must not pass after the restore.
            subject = "$UNIBUS.CTL.rooms.gaps.info"
            captured = sign_request(alice, subject, b"")
            accepted = await nc_old.request(subject, b"", headers=captured)
            assert "Nats-Service-Error-Code" not in (accepted.headers or {})

            # Restoring over live state is refused, and changes nothing.
            code, out = await unibus("restore", str(tmp_path / "backup"), env=cli_env(old.url, keys_dir))
            assert code == 1 and "refusing to restore: 4 stream(s) already exist" in out, out
            assert await state_of(nc_old, as_alice, persisted) == before

        # The wipe: a brand-new server with an empty store.
        code, out = await unibus("restore", str(tmp_path / "backup"), env=cli_env(new.url, keys_dir))
        assert code == 0, out
        async with plane_starter(tmp_path, new) as start:
            await start(clock_skew_s=60.0)
            replay = await nc_new.request(subject, b"", headers=captured)
            assert (replay.headers or {}).get("Nats-Service-Error-Code") == "503", replay.headers
            assert "restore" in (replay.headers or {}).get("Nats-Service-Error", "")
        async with plane_starter(tmp_path, new) as start:
            # A small window: fresh signatures are past the restore's guard at once.
            await start(clock_skew_s=0.5)
            as_alice = ControlClient(nc_new, alice)
            await signed_requests_answer(as_alice)
            assert await state_of(nc_new, as_alice, persisted) == before
            assert (await ControlClient(nc_new, bob).info("gaps"))["role"] == "member"
            assert (await as_alice.info("passing"))["mode"] == "ephemeral"
            # Writes work on the restored rows and streams.
            await as_alice.add_member("long", bob.public_key)
            await nc_new.publish("unibus.room.long", b"after")
            await wait_stored(nc_new, "UNIBUS_long", 231)


async def signed_requests_answer(client: ControlClient) -> None:
    """Until a fresh signature is past the restore's replay guard (half a second here)."""

    async def answered() -> bool:
        try:
            await client.list_rooms()
        except Unavailable:
            return False
        return True

    await wait_until(answered, "signed requests are answered again", within_s=5, every_s=0.05)


def test_a_backup_refuses_a_directory_that_holds_something(tmp_path: Path) -> None:
    (tmp_path / "old-backup").mkdir()
    (tmp_path / "old-backup" / "manifest.json").write_text(json.dumps({}))
    with pytest.raises(BackupError, match="not empty"):
        new_directory(tmp_path / "old-backup")


async def test_a_room_larger_than_the_servers_flow_window_is_acknowledged_through(
    tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity, alice: Identity
) -> None:
    """nats-server sends at most 16 MiB of a snapshot before it waits for acks: a room of
    25 MB of incompressible frames goes through only if every chunk is acknowledged, under
    the boundary's permissions for the control plane's user."""
    async with two_servers(tmp_path, boundary_keys, inspector) as (old, new, nc_old, nc_new):
        async with plane_starter(tmp_path, old) as start:
            await start(room_max_bytes=32 * 1024 * 1024)  # the room holds all 25 MB
            await ControlClient(nc_old, alice).create_room("large", encrypted=False)
            for _ in range(50):
                await nc_old.publish("unibus.room.large", os.urandom(500_000))
            await wait_stored(nc_old, "UNIBUS_large", 50)
            env = cli_env(old.url, tmp_path / "keys")
            code, out = await unibus("backup", str(tmp_path / "backup"), env=env)
            assert code == 0, out
        code, out = await unibus("restore", str(tmp_path / "backup"), env=cli_env(new.url, tmp_path / "keys"))
        assert code == 0, out
        assert await stream_messages(nc_new, "UNIBUS_large") == await stream_messages(nc_old, "UNIBUS_large")


async def test_the_sqlite_fallback_is_backed_up_online_with_the_documented_command(tmp_path: Path) -> None:
    """docs/operations.md's one line, run while the store is open: SQLite's backup API
    copies a consistent file, WAL included."""
    live = SqliteStore(tmp_path / "data" / "rooms.sqlite")
    owner = "U" + "A" * 55
    for i in range(20):
        room_id = f"room{i}"
        members: dict[str, Role] = {owner: "owner", f"U{i:055d}": "member"}
        await live.create(Room(room_id, "ephemeral", f"unibus.room.{room_id}", owner, members))
    (tmp_path / "backup").mkdir()
    command = (
        "import sqlite3; sqlite3.connect('data/rooms.sqlite').backup(sqlite3.connect('backup/rooms.sqlite'))"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", command, cwd=tmp_path)
    assert await proc.wait() == 0
    copy = SqliteStore(tmp_path / "backup" / "rooms.sqlite")
    assert await copy.rooms_of(None) == await live.rooms_of(None)
    assert [r.id for r in await copy.rooms_of("U" + "0" * 54 + "7")] == ["room7"]
    await live.close()
    await copy.close()


async def test_a_restore_refuses_a_doctored_manifest_and_one_failing_part_way_leaves_nothing(
    tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity, alice: Identity
) -> None:
    async with two_servers(tmp_path, boundary_keys, inspector) as (old, new, nc_old, nc_new):
        async with plane_starter(tmp_path, old) as start:
            await start()
            for room_id in ("first", "second"):
                await ControlClient(nc_old, alice).create_room(room_id, encrypted=False)
            env = cli_env(old.url, tmp_path / "keys")
            code, out = await unibus("backup", str(tmp_path / "backup"), env=env)
            assert code == 0, out
        await nc_old.close()
        manifest_path = tmp_path / "backup" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())

        async def restore_with(change: Any) -> tuple[int, str]:
            manifest_path.write_text(json.dumps(change(json.loads(json.dumps(manifest)))))
            return await unibus("restore", str(tmp_path / "backup"), env=cli_env(new.url, tmp_path / "keys"))

        def subjects(doctored: dict[str, Any]) -> dict[str, Any]:
            doctored["streams"][1]["config"]["subjects"] = ["$UNIBUS.CTL.rooms.>"]
            return doctored

        def replicas(doctored: dict[str, Any]) -> dict[str, Any]:
            doctored["streams"][2]["config"]["num_replicas"] = 3
            return doctored

        # A doctored manifest cannot restore a stream that captures control requests.
        code, out = await restore_with(subjects)
        assert code == 1 and "UNIBUS_first is not a stream `unibus backup` saves" in out, out
        # A nonce stream left from before (only the rest was wiped) gets the restore's mark too.
        await nc_new.jetstream().add_stream(nonce_stream_config(Config(), 1))
        # The second room's stream cannot be placed on one server: the restore fails there,
        # after the first was made, and removes it.
        code, out = await restore_with(replicas)
        assert code == 1 and "UNIBUS_second" in out, out
        assert [i.config.name for i in await nc_new.jetstream().streams_info()] == [NONCE_STREAM]
        code, out = await restore_with(lambda unchanged: unchanged)
        assert code == 0, out
        assert RESTORED_MARK in ((await nc_new.jetstream().stream_info(NONCE_STREAM)).config.metadata or {})


async def test_a_cluster_backup_restores_onto_one_server_with_replicas_1(
    tmp_path: Path, open_nats_server: NatsServer, alice: Identity
) -> None:
    """Snapshots of R3 streams (taken through their leaders) restore anywhere; `--replicas`
    places them on a single server. Without the boundary the commands connect as the
    service does, with no keys."""
    cluster = Cluster(tmp_path / "cluster").start()
    # The plane and this connection on one node: a request never races the propagation
    # of the service's subscription over the routes.
    nc_cluster = await connect_all(cluster.urls[:1])
    nc_single = await nats.connect(open_nats_server.url)
    try:
        async with plane_starter(tmp_path, open_nats_server) as start:
            await start(nats_url=cluster.urls[0])
            await ControlClient(nc_cluster, alice).create_room("replicated", encrypted=False)
            for i in range(30):
                await nc_cluster.publish("unibus.room.replicated", f"frame {i}".encode())
            await wait_stored(nc_cluster, "UNIBUS_replicated", 30)
            assert (await nc_cluster.jetstream().stream_info("UNIBUS_replicated")).config.num_replicas == 3
            code, out = await unibus("backup", str(tmp_path / "backup"), env=cli_env(",".join(cluster.urls)))
            assert code == 0, out
        env = cli_env(open_nats_server.url)
        code, out = await unibus("restore", str(tmp_path / "backup"), "--replicas", "1", env=env)
        assert code == 0, out
        for stream in ("UNIBUS_replicated", f"KV_{ROOM_BUCKET}", NONCE_STREAM):
            assert (await nc_single.jetstream().stream_info(stream)).config.num_replicas == 1
        single = await stream_messages(nc_single, "UNIBUS_replicated")
        assert single == await stream_messages(nc_cluster, "UNIBUS_replicated")
        assert await rows(nc_single) == await rows(nc_cluster)
    finally:
        await nc_cluster.close()
        await nc_single.close()
        cluster.stop()
