"""Room lifecycle: create (stream before row), conflicts, hostile ids, delete, restart, no JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import KeyNotFoundError

from unibus import orphans
from unibus.client import (
    BadRequest,
    Conflict,
    ControlClient,
    Forbidden,
    Identity,
    NotFound,
    TooMany,
    Unavailable,
)
from unibus.config import AuthMode, Config
from unibus.natsserver import NatsServer
from unibus.runner import Running, running
from unibus.storage import Room
from unibus.streams import ensure_room_stream
from unibus.wire.interest import confirm_interest
from unibus.wire.names import ROOM_BUCKET
from unibus.wire.signing import sign_request

from harness.boundary import connect_as
from harness.checks import stream_names
from harness.instances import ServiceInstance
from harness.plane import StartPlane


async def test_create_makes_the_stream_with_the_go_client_config(nc: Client, as_alice: ControlClient) -> None:
    room = await as_alice.create_room("ordered", mode="matrix", name="Ordered")
    info = await nc.jetstream().stream_info("UNIBUS_ordered")
    assert info.config.subjects == ["unibus.room.ordered"]
    assert info.config.retention == RetentionPolicy.LIMITS
    assert info.config.storage == StorageType.FILE
    assert info.config.num_replicas == 1
    assert not info.config.allow_direct
    assert room["stream"] == "UNIBUS_ordered"
    assert room["owner"] == as_alice.identity.public_key  # type: ignore[union-attr]


async def test_ephemeral_room_gets_no_stream(nc: Client, as_alice: ControlClient) -> None:
    room = await as_alice.create_room("fleeting", mode="ephemeral")
    assert room["stream"] is None
    assert "UNIBUS_fleeting" not in await stream_names(nc)
    assert (await as_alice.history("fleeting")).frames == []


async def test_generated_id_when_none_given(as_alice: ControlClient) -> None:
    first = await as_alice.create_room()
    second = await as_alice.create_room()
    assert first["id"] != second["id"]
    assert (await as_alice.info(first["id"]))["id"] == first["id"]


async def test_stream_failure_leaves_no_room(nc: Client, as_alice: ControlClient, plane: Running) -> None:
    # Another stream already captures the room's subject: JetStream refuses the room's stream.
    await nc.jetstream().add_stream(StreamConfig(name="SQUATTER", subjects=["unibus.room.taken"]))
    with pytest.raises(Unavailable, match="nothing was created"):
        await as_alice.create_room("taken")
    assert await plane.plane.store.get("taken") is None
    with pytest.raises(NotFound):
        await as_alice.info("taken")
    assert "UNIBUS_taken" not in await stream_names(nc)


async def test_duplicate_create_is_409_and_changes_nothing(
    as_alice: ControlClient, as_bob: ControlClient
) -> None:
    await as_alice.create_room("dup", name="first")
    with pytest.raises(Conflict):
        await as_bob.create_room("dup", name="second", mode="ephemeral")
    info = await as_alice.info("dup")
    assert (info["name"], info["mode"], info["owner"]) == ("first", "matrix", as_alice.identity.public_key)  # type: ignore[union-attr]


async def test_concurrent_creates_of_one_id_exactly_one_wins(
    start_plane: StartPlane, nc: Client, plane: Running
) -> None:
    await start_plane()  # a second instance in the same queue group
    clients = [ControlClient(nc, Identity.generate()) for _ in range(12)]
    results = await asyncio.gather(*(c.create_room("race") for c in clients), return_exceptions=True)
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, dict))
    info = winners[0]
    assert info["owner"] in {c.identity.public_key for c in clients if c.identity}


@pytest.mark.parametrize(
    "room_id",
    ["a.b", "*", ">", "a b", "", "x" * 65, "caf\u00e9", "a/b", "$SYS", "room\n", "ünï", "tab\t"],
)
async def test_hostile_ids_in_create_body_are_400(nc: Client, as_alice: ControlClient, room_id: str) -> None:
    before = await stream_names(nc)
    with pytest.raises(BadRequest, match="id must be"):
        await as_alice.call("create", {"id": room_id})
    assert await stream_names(nc) == before
    assert await as_alice.list_rooms() == []


@pytest.mark.parametrize("token", ["%2e", "caf\u00e9", "$x", "a=b", "x" * 65])
async def test_hostile_ids_in_the_subject_are_400(as_alice: ControlClient, token: str) -> None:
    with pytest.raises(BadRequest, match="room id must be"):
        await as_alice.call(f"{token}.info")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1,2]",
        b'"str"',
        b'{"mode":"forever"}',
        b'{"name":5}',
        b'{"encrypted":"yes"}',
        b"\xff\xfe",
    ],
)
async def test_malformed_create_bodies_are_400(as_alice: ControlClient, body: bytes) -> None:
    with pytest.raises(BadRequest):
        await as_alice.request_raw("create", body)
    assert await as_alice.list_rooms() == []


async def test_encrypted_create_needs_a_sealed_key(as_alice: ControlClient) -> None:
    with pytest.raises(BadRequest, match="sealed_key"):
        await as_alice.create_room("secret", encrypted=True)
    room = await as_alice.create_room("secret", encrypted=True, sealed_key="c2VhbGVk")
    assert (room["encrypted"], room["key_epoch"]) == (True, 1)
    assert (await as_alice.sealed_keys("secret"))["keys"] == {"1": "c2VhbGVk"}


async def test_missing_room_is_404_and_non_member_403(as_alice: ControlClient, as_bob: ControlClient) -> None:
    await as_alice.create_room("private")
    for suffix in ("info", "history", "members", "key"):
        with pytest.raises(NotFound):
            await as_bob.call(f"nowhere.{suffix}")
        with pytest.raises(Forbidden):
            await as_bob.call(f"private.{suffix}")


async def test_list_shows_only_the_signers_rooms(as_alice: ControlClient, as_bob: ControlClient) -> None:
    await as_alice.create_room("a1")
    await as_alice.create_room("a2")
    await as_bob.create_room("b1")
    assert [r["id"] for r in await as_alice.list_rooms()] == ["a1", "a2"]
    assert [r["id"] for r in await as_bob.list_rooms()] == ["b1"]


async def test_delete_is_owner_only_and_removes_row_and_stream(
    nc: Client, as_alice: ControlClient, as_bob: ControlClient
) -> None:
    await as_alice.create_room("doomed")
    await as_alice.add_member("doomed", as_bob.identity.public_key)  # type: ignore[union-attr]
    with pytest.raises(Forbidden):
        await as_bob.delete_room("doomed")
    assert await as_alice.delete_room("doomed") == {"deleted": "doomed"}
    assert "UNIBUS_doomed" not in await stream_names(nc)
    with pytest.raises(NotFound):
        await as_alice.info("doomed")
    # The id is free again, and the new room starts with an empty history.
    await as_alice.create_room("doomed")
    assert (await as_alice.history("doomed")).frames == []


async def test_rooms_and_frames_survive_a_restart(
    tmp_path: Path, nats_server: NatsServer, alice: Identity
) -> None:
    config = Config(
        nats_url=nats_server.url,
        data_dir=str(tmp_path / "d"),
        auth_mode=AuthMode.ENFORCE,
        keys_dir=str(tmp_path / "keys"),
    )
    async with running(config):
        nc = (await connect_as(nats_server.url, alice)).nc
        client = ControlClient(nc, alice)
        room = await client.create_room("durable")
        await nc.publish(room["subject"], b"kept")
        await nc.flush()
        await nc.close()
    await asyncio.to_thread(nats_server.restart)
    async with running(config):
        nc = (await connect_as(nats_server.url, alice)).nc
        client = ControlClient(nc, alice)
        assert [r["id"] for r in await client.list_rooms()] == ["durable"]
        assert (await client.history("durable")).frames == [b"kept"]
        await nc.close()


async def test_without_jetstream_rooms_work_and_history_is_empty(
    tmp_path: Path, core_nats_server: NatsServer, alice: Identity, bob: Identity
) -> None:
    config = Config(nats_url=core_nats_server.url, data_dir=str(tmp_path / "sq"), auth_mode=AuthMode.ENFORCE)
    async with running(config) as run:
        assert run.plane.deps is not None and run.plane.deps.js is None
        nc = await nats.connect(core_nats_server.url)
        client = ControlClient(nc, alice)
        room = await client.create_room("plain", mode="matrix")
        await nc.publish(room["subject"], b"gone")
        await client.add_member("plain", bob.public_key)
        assert (await client.history("plain")).frames == []
        assert len((await client.members("plain"))["members"]) == 2
        await nc.close()
    async with running(config):  # the SQLite rows survive a restart too
        nc = await nats.connect(core_nats_server.url)
        assert [r["id"] for r in await ControlClient(nc, bob).list_rooms()] == ["plain"]
        await nc.close()


async def test_without_jetstream_a_replay_is_refused_after_a_restart(
    tmp_path: Path, core_nats_server: NatsServer, alice: Identity, bob: Identity
) -> None:
    """The SQLite fallback keeps its claimed nonces in a file for the window: a captured
    `members.add` sent again after the service restarted is still a replay."""
    config = Config(nats_url=core_nats_server.url, data_dir=str(tmp_path / "sq"), auth_mode=AuthMode.ENFORCE)
    subject = "$UNIBUS.CTL.rooms.replayed.members.add"
    body = json.dumps({"member": bob.public_key}).encode()
    captured = sign_request(alice, subject, body)
    async with running(config):
        nc = await nats.connect(core_nats_server.url)
        client = ControlClient(nc, alice)
        await client.create_room("replayed", encrypted=False)
        first = await nc.request(subject, body, timeout=5, headers=captured)
        assert not (first.headers or {}).get("Nats-Service-Error-Code")
        await client.remove_member("replayed", bob.public_key)
        await nc.close()
    async with running(config):
        nc = await nats.connect(core_nats_server.url)
        again = await nc.request(subject, body, timeout=5, headers=captured)
        assert (again.headers or {}).get("Nats-Service-Error") == "replayed request"
        members = await ControlClient(nc, alice).members("replayed")
        assert [m["id"] for m in members["members"]] == [alice.public_key]
        await nc.close()


async def test_an_orphan_stream_is_swept_and_nothing_else(
    nc: Client, plane: Running, as_alice: ControlClient
) -> None:
    """A crash between a create's stream and its row leaves a marked stream without a
    room: the sweep deletes it. A real room's stream, and an unmarked stream a Go client
    made for a room of its own, stay. The sweep lists names and asks for the info of the
    streams without a room only (`STREAM.LIST` of every stream's info took seconds at
    10,000 streams), as the JetStream API requests it sends show."""
    assert plane.plane.deps is not None and plane.plane.deps.js is not None
    deps = plane.plane.deps
    js = deps.js
    await as_alice.create_room("kept")
    ghost = Room(id="ghost", mode="matrix", subject="unibus.room.ghost", owner=None, members={})
    await ensure_room_stream(js, ghost, deps.streams, 5)  # the crash: no row follows
    await js.add_stream(StreamConfig(name="UNIBUS_gophers", subjects=["unibus.room.gophers"]))
    other = replace(deps.streams, api_prefix="$OTHER.CTL")  # another deployment's, same JetStream
    await ensure_room_stream(js, replace(ghost, id="theirs", subject="unibus.room.theirs"), other, 5)
    fresh = await orphans.sweep(nc, js, deps.store, "unibus.room", "$UNIBUS.CTL", 5)
    assert fresh == []  # younger than MIN_AGE_S: its create may still be writing the row
    asked: list[str] = []

    async def note(msg: Msg) -> None:
        asked.append(msg.subject)

    seen = await nc.subscribe("$JS.API.STREAM.>", cb=note)
    await confirm_interest(nc)
    swept = await orphans.sweep(nc, js, deps.store, "unibus.room", "$UNIBUS.CTL", 5, min_age_s=0)
    await nc.flush()
    await seen.unsubscribe()
    assert swept == ["UNIBUS_ghost"]
    infos = {subject.removeprefix("$JS.API.STREAM.INFO.") for subject in asked if ".INFO." in subject}
    assert {"UNIBUS_ghost", "UNIBUS_gophers", "UNIBUS_theirs"} <= infos and "UNIBUS_kept" not in infos
    assert "$JS.API.STREAM.NAMES" in asked and "$JS.API.STREAM.LIST" not in asked
    names = await stream_names(nc)
    assert {"UNIBUS_kept", "UNIBUS_gophers", "UNIBUS_theirs"} <= names and "UNIBUS_ghost" not in names


async def test_quotas_on_rooms_members_and_creation_rate(
    start_plane: StartPlane, nc: Client, alice: Identity, bob: Identity
) -> None:
    """One identity can neither fill the store with rooms nor fill someone else's list."""
    await start_plane(max_rooms_per_creator=3, max_rooms_per_member=3, max_members_per_room=2)
    carol = Identity.generate()
    as_alice, as_bob = ControlClient(nc, alice), ControlClient(nc, bob)
    for i in range(3):
        await as_alice.create_room(f"mine{i}", encrypted=False)
    with pytest.raises(Forbidden, match="at most 3 rooms per creator"):
        await as_alice.create_room("one-too-many", encrypted=False)
    await as_alice.add_member("mine0", bob.public_key)
    with pytest.raises(Forbidden, match="the room is full"):
        await as_alice.add_member("mine0", carol.public_key)
    await as_alice.add_member("mine1", carol.public_key)
    await as_alice.add_member("mine2", carol.public_key)
    await as_bob.create_room("bobs", encrypted=False)
    await as_bob.create_room("bobs2", encrypted=False)
    await as_bob.add_member("bobs", carol.public_key)
    with pytest.raises(Forbidden, match="in 3 rooms"):
        await as_bob.add_member("bobs2", carol.public_key)
    assert len(await ControlClient(nc, carol).list_rooms()) == 3


async def test_creating_rooms_too_fast_is_429(start_plane: StartPlane, nc: Client, alice: Identity) -> None:
    await start_plane(creates_per_second=1.0)
    as_alice = ControlClient(nc, alice)
    codes = []
    for i in range(55):
        try:
            await as_alice.create_room(f"burst{i}", mode="ephemeral", encrypted=False)
            codes.append(200)
        except TooMany:
            codes.append(429)
    assert codes[:50] == [200] * 50 and 429 in codes[50:]


ROUNDS = 20


async def settled(nc: Client, bucket_stream: str, quiet_s: float = 1.0) -> None:
    """Until neither `bucket_stream`'s last sequence nor the set of streams has moved for
    `quiet_s` (bounded). nats-server works through queued JetStream API requests on a pool
    of its own, so a killed process's last stream creates may land after its last rows."""
    js = nc.jetstream()
    last: object = None
    since = asyncio.get_running_loop().time()
    deadline = since + 30
    while asyncio.get_running_loop().time() - since < quiet_s:
        assert asyncio.get_running_loop().time() < deadline, f"{bucket_stream} never settled"
        now = ((await js.stream_info(bucket_stream)).state.last_seq, await stream_names(nc))
        if now != last:
            last, since = now, asyncio.get_running_loop().time()
        await asyncio.sleep(0.05)


async def test_kill_9_during_creates_leaves_orphans_the_sweep_removes(
    tmp_path: Path, nats_server: NatsServer, nc: Client, start_plane: StartPlane, alice: Identity
) -> None:
    """A real crash: `unibus serve` killed with SIGKILL while 150 creates are in flight.
    The streams whose rows never came are swept; every room that answered keeps its
    stream. Rounds repeat until a crash has landed between a stream and its row (on a
    busy machine fewer creates are in flight at the kill, so it may take more rounds)."""
    env = {
        "UNIBUS_KEYS_DIR": str(tmp_path / "keys"),
        "UNIBUS_CREATES_PER_SECOND": "100000",
        "UNIBUS_CREATOR_STORE_BYTES": str(2**40),  # 1,200 rooms of one creator, all persisted
    }
    client = ControlClient(nc, alice, timeout_s=2.0)
    orphaned: set[str] = set()
    for round_ in range(ROUNDS):
        instance = ServiceInstance(f"crash{round_}", nats_server.url, tmp_path / "crash", env).start()
        creates = [
            asyncio.ensure_future(client.create_room(f"k{round_}x{i}", encrypted=False)) for i in range(150)
        ]
        for answered, create in enumerate(asyncio.as_completed(creates)):
            with contextlib.suppress(Exception):
                await create
            if answered == 20:
                break
        instance.kill()
        await asyncio.gather(*creates, return_exceptions=True)
        # What the killed process sent last may reach nats-server after the kill: classify
        # once the bucket and the streams are still (a row or stream landing later would
        # make the classification wrong; CI once saw a stream created after the sweep).
        await settled(nc, f"KV_{ROOM_BUCKET}")
        rows = await nc.jetstream().key_value(ROOM_BUCKET)
        for name in await stream_names(nc):
            if name.startswith(f"UNIBUS_k{round_}x"):
                with contextlib.suppress(KeyNotFoundError):
                    await rows.get(name.removeprefix("UNIBUS_"))
                    continue
                orphaned.add(name)
        if orphaned:
            break
    assert orphaned, f"no crash landed between a stream and its row in {ROUNDS} rounds"
    plane = await start_plane()
    assert plane.plane.deps is not None and plane.plane.deps.js is not None
    js, store = plane.plane.deps.js, plane.plane.deps.store
    swept = await orphans.sweep(nc, js, store, "unibus.room", "$UNIBUS.CTL", 5, min_age_s=0)
    assert set(swept) == orphaned
    rooms = {room["id"] for room in await client.list_rooms()}
    left = {name for name in await stream_names(nc) if name.startswith("UNIBUS_k")}
    assert left == {f"UNIBUS_{room_id}" for room_id in rooms}
