"""Attacks on `unibus backup` / `unibus restore`, against real nats-servers: a doctored
backup directory, peers reaching for the snapshot API, and faults in the middle of a
restore. Each test names the protection it pins."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from test_backup import cli_env, two_servers
from unibus.auth.replay import RESTORED_MARK
from unibus.callout.keys import BoundaryKeys
from unibus.client import ControlClient, Identity, Peer
from unibus.config import Config
from unibus.natsserver import NatsServer
from unibus.operations.backup import BackupError, new_directory, restore, restore_lock_name
from unibus.runner import Running
from unibus.wire.interest import confirm_interest
from unibus.wire.names import CONTROL_PREFIX, INBOXES, NONCE_STREAM, ROOM_BUCKET
from unibus.wire.signing import sign_request

from harness.boundary import as_role, bounded_spec, connect_as, connect_inspector, denied_request
from harness.cli import UNIBUS, unibus
from harness.plane import StartPlane, plane_starter
from harness.waiting import wait_stored, wait_until


@dataclass
class Saved:
    """A backup of rooms `first` and `second` (a few frames each), taken from `old`, and
    a brand-new server `new` to restore it into; `nc_*` are the inspector's connections."""

    directory: Path
    keys_dir: Path
    old: NatsServer
    new: NatsServer
    nc_old: Client
    nc_new: Client

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        return dict(json.loads(self.manifest_path.read_text()))

    def entry(self, manifest: dict[str, Any], stream: str) -> dict[str, Any]:
        return next(e for e in manifest["streams"] if e["stream"] == stream)

    async def restore(self) -> tuple[int, str]:
        return await unibus("restore", str(self.directory), env=cli_env(self.new.url, self.keys_dir))

    async def restoring(self) -> bool:
        """Whether a restore into the new server has made its first room stream."""
        return "UNIBUS_room00" in await self.streams_on_new()

    async def streams_on_new(self) -> list[str]:
        return sorted(info.config.name or "" for info in await self.nc_new.jetstream().streams_info())

    async def restored_on_new(self) -> list[str]:
        """The streams of the backup on `new`: the nonce stream, stamped before a restore
        makes its first stream, stays stamped when it fails."""
        return [stream for stream in await self.streams_on_new() if stream != NONCE_STREAM]


@contextlib.asynccontextmanager
async def backup_of(
    tmp_path: Path, keys: BoundaryKeys, inspector: Identity, owner: Identity, rooms: dict[str, bytes]
) -> AsyncIterator[Saved]:
    """A backup of `rooms` (id → five frames of that payload) taken from a server with the
    control plane running, and a new server to restore it into."""
    async with two_servers(tmp_path, keys, inspector) as (old, new, nc_old, nc_new):
        async with plane_starter(tmp_path, old) as start:
            await start()
            for room_id, payload in rooms.items():
                await ControlClient(nc_old, owner).create_room(room_id, encrypted=False)
                for _ in range(5):
                    await nc_old.publish(f"unibus.room.{room_id}", payload)
                await wait_stored(nc_old, f"UNIBUS_{room_id}", 5)
            code, out = await unibus(
                "backup", str(tmp_path / "backup"), env=cli_env(old.url, tmp_path / "keys")
            )
            assert code == 0, out
        yield Saved(tmp_path / "backup", tmp_path / "keys", old, new, nc_old, nc_new)


@pytest.fixture
async def saved(
    tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity, alice: Identity
) -> AsyncIterator[Saved]:
    rooms = {"first": b"first frame", "second": b"second frame"}
    async with backup_of(tmp_path, boundary_keys, inspector, alice, rooms) as made:
        yield made


def doctor(saved: Saved, stream: str, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = saved.manifest()
    change(saved.entry(manifest, stream)["config"])
    saved.manifest_path.write_text(json.dumps(manifest))


BUCKET_STREAM = f"KV_{ROOM_BUCKET}"
# A room's frames written into another room's row: any member of `first` could forge rows.
INTO_ROWS = {"src": "unibus.room.first", "dest": f"$KV.{ROOM_BUCKET}.second"}
DOCTORED: dict[str, tuple[str, dict[str, Any]]] = {
    # Every frame of `first` republished as a row of the bucket (or to $JS.API.>).
    "republish": ("UNIBUS_first", {"republish": INTO_ROWS}),
    # The room's own republish pointed at another room's stored subject: `first`'s frames
    # read by `second`'s members. Only the exact one streams.py makes is restored.
    "republish to another room": (
        "UNIBUS_first",
        {"republish": {"src": "unibus.room.first", "dest": "unibus.room.second.stored"}},
    ),
    # `first`'s stream sources `second`'s frames: its members read them through history.
    "sources": ("UNIBUS_first", {"sources": [{"name": "UNIBUS_second"}]}),
    # Rows fed from a room's frames through a transforming source of the bucket.
    "bucket sources": (
        BUCKET_STREAM,
        {"sources": [{"name": "UNIBUS_first", "subject_transforms": [INTO_ROWS]}]},
    ),
    # Every change to `second`'s row (members, sealed keys) shown to the members of `first`.
    "bucket republish": (
        BUCKET_STREAM,
        {"republish": {"src": f"$KV.{ROOM_BUCKET}.second", "dest": "unibus.room.first"}},
    ),
    "subject transform": (
        "UNIBUS_first",
        {"subject_transform": {"src": "unibus.room.first", "dest": "elsewhere"}},
    ),
    # Acks: JetStream would publish each, unchecked, to the reply subject a member chose.
    "acks": ("UNIBUS_first", {"no_ack": False}),
    # One frame with `Nats-Rollup: all` from any member wipes the room's history.
    "rollups": ("UNIBUS_first", {"allow_rollup_hdrs": True}),
    "sealed": ("UNIBUS_first", {"sealed": True}),
}


@pytest.mark.parametrize("attack", sorted(DOCTORED))
async def test_a_doctored_stream_config_is_refused_before_anything_is_made(saved: Saved, attack: str) -> None:
    """Pins `_verify`'s check of the configuration beyond name and subjects: without it
    each of these restores a stream the service never makes, one that moves frames or
    rows somewhere a peer can write or read them."""
    stream, extra = DOCTORED[attack]
    doctor(saved, stream, lambda config: config.update(extra))
    code, out = await saved.restore()
    assert code == 1 and f"{stream} is not a stream `unibus backup` saves" in out, out
    assert await saved.streams_on_new() == []


async def test_a_manifest_naming_a_stream_twice_is_refused_before_anything_is_made(saved: Saved) -> None:
    """Pins the manifest check that each stream comes once: without it the second entry's
    restore is refused by the server as a stream someone else made, and the rollback
    leaves the first one standing, so the restore cannot be run again."""
    manifest = saved.manifest()
    manifest["streams"].insert(0, saved.entry(manifest, "UNIBUS_first"))
    saved.manifest_path.write_text(json.dumps(manifest))
    code, out = await saved.restore()
    assert code == 1 and "not each stream once" in out, out
    assert await saved.restored_on_new() == []


async def snapshot_with_consumers(nc: Client, stream: str) -> bytes:
    """The stream's snapshot as JetStream makes it when asked to keep its consumers,
    which `unibus backup` never asks for."""
    deliver = nc.new_inbox()
    sub = await nc.subscribe(deliver)
    request = {"deliver_subject": deliver, "no_consumers": False, "chunk_size": 64 * 1024}
    reply = json.loads(
        (await nc.request(f"$JS.API.STREAM.SNAPSHOT.{stream}", json.dumps(request).encode())).data
    )
    assert "error" not in reply, reply
    data = b""
    while chunk := await sub.next_msg(timeout=10):
        if not chunk.data:
            break
        data += chunk.data
        if chunk.reply:
            await nc.publish(chunk.reply, b"")
    await sub.unsubscribe()
    return data


async def restore_a_snapshot_with_a_consumer(saved: Saved) -> tuple[int, str, list[bytes]]:
    """A snapshot file of `first` whose checksum was recomputed but that holds a push
    consumer delivering to `nobody.yet`; restored, with what reached that subject."""
    # Made on the old server's copy of the stream, delivering to a subject nobody hears there.
    config = {"durable_name": "thief", "deliver_subject": "nobody.yet"}
    body = json.dumps({"stream_name": "UNIBUS_first", "config": config}).encode()
    await saved.nc_old.request("$JS.API.CONSUMER.CREATE.UNIBUS_first.thief", body)
    data = await snapshot_with_consumers(saved.nc_old, "UNIBUS_first")
    await saved.nc_old.jetstream().delete_consumer("UNIBUS_first", "thief")
    (saved.directory / "UNIBUS_first.snapshot").write_bytes(data)
    manifest = saved.manifest()
    entry = saved.entry(manifest, "UNIBUS_first")
    entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    saved.manifest_path.write_text(json.dumps(manifest))

    sink = await saved.nc_new.subscribe("nobody.yet")
    code, out = await saved.restore()
    await confirm_interest(saved.nc_new)
    stolen = []
    with contextlib.suppress(TimeoutError):
        while True:
            stolen.append((await sink.next_msg(timeout=0.5)).data)
    return code, out, stolen


async def test_a_snapshot_carrying_a_consumer_is_refused_and_leaves_nothing(saved: Saved) -> None:
    """nats-server restores the consumers a snapshot file holds, with the deliver subject
    the file names, and such a consumer delivers the room's frames from inside the
    account, unchecked, to any subject (a row of the bucket, `$JS.API.>`). Pins the
    restore's refusal of a stream that comes back with consumers: without it this
    restore succeeds and the consumer stays."""
    code, out, _ = await restore_a_snapshot_with_a_consumer(saved)
    assert code == 1 and "its snapshot holds consumers" in out, out
    assert await saved.restored_on_new() == []


@pytest.mark.xfail(
    strict=True,
    reason="the restore sees the consumer only once nats-server has made it and it has delivered;"
    " refusing it first needs the tarball read, which is S2-compressed (no Python decoder here)",
)
async def test_a_consumer_in_a_snapshot_delivers_nothing(saved: Saved) -> None:
    _, _, stolen = await restore_a_snapshot_with_a_consumer(saved)
    assert stolen == []


async def test_peers_and_the_shim_get_nothing_of_the_snapshot_api(
    bounded_plane: Running, boundary_keys: BoundaryKeys, alice: Identity
) -> None:
    """On the shipped config, a member of the room and the shim's user try to take a
    snapshot into their own inbox, to acknowledge or forge chunks of one in progress, and
    to listen on the control plane's inboxes where `unibus backup` receives chunks. Pins
    that `$JS.SNAPSHOT.>` went to the service user alone (serverconf.py) and that the
    callout grants peers nothing under `$JS.` (permissions.py)."""
    member = await connect_as(bounded_plane.nats_url, alice)
    try:
        await Peer(member.nc, alice).create_room("vault")
        inbox = member.nc.new_inbox()
        snapshot = json.dumps({"deliver_subject": inbox, "no_consumers": True}).encode()
        async with as_role(bounded_plane.nats_url, boundary_keys, "shim") as shim:
            for who in (member, shim):
                await denied_request(who, "$JS.API.STREAM.SNAPSHOT.UNIBUS_vault", snapshot)
                await denied_request(who, f"$JS.API.STREAM.SNAPSHOT.KV_{ROOM_BUCKET}", snapshot)
                await denied_request(who, "$JS.API.STREAM.RESTORE.UNIBUS_later", b"{}")
                await denied_request(who, "$JS.SNAPSHOT.ACK.UNIBUS_vault.x")
                await denied_request(who, "$JS.SNAPSHOT.RESTORE.UNIBUS_later.x", b"forged chunk")
                await who.nc.subscribe(f"{INBOXES['service']}.>")
                assert await who.refused("subscription", f"{INBOXES['service']}.>"), who.errors
    finally:
        await member.nc.close()


async def test_a_request_accepted_before_the_loss_is_not_replayed_to_an_instance_that_ran_through_the_restore(
    tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity, alice: Identity
) -> None:
    """The JetStream loses every stream underneath a running instance (a store wiped,
    a server replaced behind the same address) and the operator restores the backup
    without stopping it. The request captured after the backup and accepted before the
    loss must not be accepted again by that instance, whose replay guard read the nonce
    stream before the restore stamped it. Pins the restore's refusal while an instance
    answers `$SRV.PING`: without it the restore succeeds and the replay is answered 200."""
    server = NatsServer(bounded_spec(tmp_path / "nats", boundary_keys, inspector)).start()
    nc = await connect_inspector(server.url, inspector)
    env = cli_env(server.url, tmp_path / "keys")
    try:
        async with plane_starter(tmp_path, server) as start:
            await start(clock_skew_s=60.0)
            await ControlClient(nc, alice).create_room("kept", encrypted=False)
            code, out = await unibus("backup", str(tmp_path / "backup"), env=env)
            assert code == 0, out
            subject = "$UNIBUS.CTL.rooms.kept.info"
            captured = sign_request(alice, subject, b"")
            accepted = await nc.request(subject, b"", headers=captured)
            assert "Nats-Service-Error-Code" not in (accepted.headers or {}), accepted.headers

            js = nc.jetstream()
            for info in await js.streams_info():
                await js.delete_stream(info.config.name or "")
            code, out = await unibus("restore", str(tmp_path / "backup"), env=env)
            assert code == 1 and "an instance of unibus-control-plane is running" in out, out
            assert await nc.jetstream().streams_info() == []
        # Stopped: the restore goes through, and the instance started then keeps the stamp.
        code, out = await unibus("restore", str(tmp_path / "backup"), env=env)
        assert code == 0, out
        async with plane_starter(tmp_path, server) as start:
            await start(clock_skew_s=60.0)
            replay = await nc.request(subject, b"", headers=captured)
            assert (replay.headers or {}).get("Nats-Service-Error-Code") == "503", replay.headers
    finally:
        await nc.close()
        server.stop()


async def test_two_restores_at_once_never_leave_a_success_without_its_streams(
    tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity, alice: Identity
) -> None:
    """Both would pass the check that no stream exists, then race stream by stream, and
    nats-server's restores of one stream name remove each other's files. Pins the
    restore lock: without it both fail (`store is closed`, `stream name already in use`)
    and the loser's rollback deletes the winner's streams; a moment later, the winner
    would report success without a room's frames."""
    rooms = {f"room{i:02d}": os.urandom(200_000) for i in range(12)}
    async with backup_of(tmp_path, boundary_keys, inspector, alice, rooms) as saved:
        # In one process, so both really are past their checks before either makes a stream.
        services = [await connect_as(saved.new.url, boundary_keys.users["service"], inbox=INBOXES["service"])]
        services.append(
            await connect_as(saved.new.url, boundary_keys.users["service"], inbox=INBOXES["service"])
        )
        results = await asyncio.gather(
            *(restore(service.nc, saved.directory, Config(), 10.0) for service in services),
            return_exceptions=True,
        )
        for service in services:
            await service.nc.close()
        succeeded = [result for result in results if not isinstance(result, BaseException)]
        assert len(succeeded) == 1, results
        assert "another restore holds" in str(next(r for r in results if isinstance(r, BaseException))), (
            results
        )
        streams = await saved.streams_on_new()
        assert streams == sorted([NONCE_STREAM, BUCKET_STREAM, *(f"UNIBUS_{r}" for r in rooms)]), results
        for room_id in rooms:
            assert (await saved.nc_new.jetstream().stream_info(f"UNIBUS_{room_id}")).state.messages == 5


async def test_a_stream_made_by_someone_else_during_a_restore_is_left_alone(
    tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity, alice: Identity
) -> None:
    """An instance started while the restore runs creates the (empty) bucket before the
    restore reaches it: the restore fails there and removes the room streams it made,
    but not the instance's bucket, which it did not make and the instance is using.
    Pins the rollback skipping a stream the server refused as already in use."""
    rooms = {f"room{i:02d}": os.urandom(200_000) for i in range(12)}
    async with backup_of(tmp_path, boundary_keys, inspector, alice, rooms) as saved:
        service = await connect_as(saved.new.url, boundary_keys.users["service"], inbox=INBOXES["service"])
        js = saved.nc_new.jetstream()

        async def bucket_once_the_first_room_is_back() -> None:
            await wait_until(saved.restoring, "the restore reaches the room streams", every_s=0.005)
            await js.create_key_value(bucket=ROOM_BUCKET)

        try:
            racing = asyncio.create_task(bucket_once_the_first_room_is_back())
            with pytest.raises(BackupError, match=f"{BUCKET_STREAM}.*already in use"):
                await restore(service.nc, saved.directory, Config(), 10.0)
            await racing
        finally:
            await service.nc.close()
        assert await saved.restored_on_new() == [BUCKET_STREAM]


async def test_a_restore_killed_mid_way_leaves_no_row_without_frames_and_the_stamp_set(
    tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity, alice: Identity
) -> None:
    """`kill -9` of `unibus restore` while it sends the room streams: no bucket (so no row
    without its stream), the replay stamp already on the nonce stream, the lock left so a
    second restore is refused with what to do, and after doing it the restore goes
    through. Pins the stamp coming before the first stream: after the last one, a kill
    once the bucket is back leaves rows and no stamp."""
    rooms = {f"room{i:02d}": os.urandom(400_000) for i in range(12)}
    async with backup_of(tmp_path, boundary_keys, inspector, alice, rooms) as saved:
        env = cli_env(saved.new.url, saved.keys_dir)
        proc = await asyncio.create_subprocess_exec(
            *UNIBUS, "restore", str(saved.directory), env=env, stdout=asyncio.subprocess.DEVNULL
        )
        await wait_until(saved.restoring, "the restore reaches the room streams", within_s=20, every_s=0.005)
        proc.kill()
        await proc.wait()
        js = saved.nc_new.jetstream()
        left = await saved.streams_on_new()
        assert BUCKET_STREAM not in left and "UNIBUS_room11" not in left, left
        assert RESTORED_MARK in ((await js.stream_info(NONCE_STREAM)).config.metadata or {})

        code, out = await unibus("restore", str(saved.directory), env=env)
        assert code == 1 and "another restore holds" in out, out
        for stream in left:
            if stream != NONCE_STREAM:
                await js.delete_stream(stream)
        code, out = await unibus("restore", str(saved.directory), env=env)
        assert code == 0, out
        assert (await js.stream_info("UNIBUS_room11")).state.messages == 5


async def test_every_file_of_a_backup_is_its_owners_alone(saved: Saved) -> None:
    """docs/operations.md promises a backup readable by its owner only. Pins the manifest
    being created like the snapshots (0600, never through a link planted in its place)."""
    assert saved.directory.stat().st_mode & 0o777 == 0o700
    for path in saved.directory.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_a_backup_refuses_a_directory_others_may_write(tmp_path: Path) -> None:
    """Pins the ownership check: whoever may write in the directory can swap a snapshot
    (with its checksum) before a restore, or link the manifest's name to a file of yours."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(BackupError, match="writable by others"):
        new_directory(shared)
    shared.chmod(0o755)
    new_directory(shared)


async def test_a_nats_server_killed_mid_restore_leaves_the_lock_and_no_bucket(
    tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity, alice: Identity
) -> None:
    """nats-server is killed while the room streams come back, then restarted on its
    store: the command fails with one line; a stream may be left half-restored (nats-server
    stores a restored stream's messages one by one), so the lock stays and the next
    restore is refused with what to do; no bucket (no row without its stream), the stamp
    set; once the leftovers are deleted the restore goes through. Pins the lock's file
    storage: in memory it was gone after the restart, and nothing pointed at the leftovers."""
    rooms = {f"room{i:02d}": os.urandom(400_000) for i in range(12)}
    async with backup_of(tmp_path, boundary_keys, inspector, alice, rooms) as saved:
        env = cli_env(saved.new.url, saved.keys_dir)
        running = asyncio.create_task(unibus("restore", str(saved.directory), "--timeout", "3", env=env))
        await wait_until(saved.restoring, "the restore reaches the room streams", within_s=20, every_s=0.005)
        saved.new.kill()
        code, out = await running
        assert code == 1 and out.startswith("unibus: restore:") and len(out.splitlines()) == 1, out
        saved.new.start()
        js = saved.nc_new.jetstream()
        left = await saved.restored_on_new()
        assert BUCKET_STREAM not in left, left
        assert RESTORED_MARK in ((await js.stream_info(NONCE_STREAM)).config.metadata or {})
        code, out = await unibus("restore", str(saved.directory), env=env)
        assert code == 1 and "another restore holds UNIBUS-RESTORING-" in out, out
        for stream in left:
            await js.delete_stream(stream)
        code, out = await unibus("restore", str(saved.directory), env=env)
        assert code == 0, out
        assert sorted(await saved.restored_on_new()) == sorted(
            [BUCKET_STREAM, *(f"UNIBUS_{r}" for r in rooms)]
        )


async def test_an_instance_does_not_start_while_a_restore_holds_its_lock(
    nc: Client, start_plane: StartPlane
) -> None:
    """The lock of a restore running, or of one killed with the bucket half back. Pins
    the instance's refusal to start then: without it the instance creates an empty
    bucket (or serves a partial one) and its orphan sweep deletes the streams of the
    rooms whose rows are not back."""
    lock = restore_lock_name(CONTROL_PREFIX)
    await nc.jetstream().add_stream(name=lock, subjects=[lock])
    with pytest.raises(RuntimeError, match=f"{lock} exists"):
        await start_plane()
    assert [info.config.name for info in await nc.jetstream().streams_info()] == [lock]
