"""Several instances in one queue group on a three-node cluster agree: one winner per room
id, no lost membership update, a revocation enforced by every instance, a captured request
accepted once cluster-wide, R3 everywhere, and a Go client's stream update undone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from unibus.client import Conflict, ControlClient, Forbidden, Identity
from unibus.wire.names import NONCE_STREAM, ROOM_BUCKET
from unibus.wire.signing import sign_request

from harness import Cluster, Spawn, connect_all, create_room
from harness.checks import history, publish_stored

pytest_plugins = ["harness.fixtures"]
pytestmark = pytest.mark.timeout(120)

INSTANCES = 3
PREFIX = "$UNIBUS.CTL.rooms"


@pytest.fixture(scope="module")
def three_instances(shared_cluster: Cluster, shared_instances: Spawn) -> Cluster:
    shared_instances(INSTANCES)
    return shared_cluster


@pytest.fixture
async def nc(three_instances: Cluster) -> AsyncIterator[Client]:
    conn = await connect_all(three_instances.urls)
    yield conn
    await conn.close()


async def outcomes(calls: list[asyncio.Future[object]] | list[object]) -> list[object]:
    return list(await asyncio.gather(*calls, return_exceptions=True))  # type: ignore[arg-type]


async def contest(nc: Client, room_id: str) -> tuple[list[ControlClient], list[object]]:
    callers = [ControlClient(nc, Identity.generate()) for _ in range(9)]
    return callers, await outcomes([c.create_room(room_id) for c in callers])


async def test_concurrent_creates_of_one_id_have_one_winner(nc: Client) -> None:
    for n in range(3):
        room_id = f"contested-{n}"
        callers, results = await contest(nc, room_id)
        winners = [c for c, r in zip(callers, results, strict=True) if isinstance(r, dict)]
        assert len(winners) == 1, results
        info = await winners[0].info(room_id)
        assert info["owner"] == winners[0].identity.public_key  # type: ignore[union-attr]


async def test_losers_of_a_concurrent_create_get_409(nc: Client) -> None:
    for n in range(3):
        _, results = await contest(nc, f"lost-{n}")
        assert all(isinstance(r, (dict, Conflict)) for r in results), results


async def test_concurrent_member_changes_lose_no_update(nc: Client) -> None:
    owner = ControlClient(nc, Identity.generate())
    await create_room(owner, "crowded")
    first = [Identity.generate().public_key for _ in range(10)]
    assert all(isinstance(r, dict) for r in await outcomes([owner.add_member("crowded", m) for m in first]))
    second = [Identity.generate().public_key for _ in range(5)]
    changes = [owner.remove_member("crowded", m) for m in first[:5]] + [
        owner.add_member("crowded", m) for m in second
    ]
    assert all(isinstance(r, dict) for r in await outcomes(changes))
    members = {m["id"] for m in (await owner.members("crowded"))["members"]}
    assert members == {owner.identity.public_key, *first[5:], *second}  # type: ignore[union-attr]


async def test_revocation_on_one_instance_is_enforced_by_all(nc: Client) -> None:
    owner, bob = ControlClient(nc, Identity.generate()), Identity.generate()
    as_bob = ControlClient(nc, bob)
    await create_room(owner, "revoked")
    await owner.add_member("revoked", bob.public_key)
    # Enough reads that every instance has the room (with bob in it) in its cache.
    await outcomes([as_bob.info("revoked") for _ in range(12)])
    await owner.remove_member("revoked", bob.public_key)
    results = await outcomes(
        [as_bob.info("revoked") for _ in range(10)] + [as_bob.history("revoked") for _ in range(10)]
    )
    assert all(isinstance(r, Forbidden) for r in results), results


async def test_a_captured_request_is_accepted_once_across_instances(nc: Client) -> None:
    signer = Identity.generate()
    subject, body = f"{PREFIX}.create", json.dumps({"id": "captured"}).encode()
    headers = sign_request(signer, subject, body)
    # Many copies at once: the queue group spreads them over every instance.
    replies = await outcomes([nc.request(subject, body, headers=headers, timeout=5) for _ in range(12)])
    codes = [(r.headers or {}).get("Nats-Service-Error-Code") for r in replies]  # type: ignore[union-attr]
    assert codes.count(None) == 1, codes
    assert sorted(c for c in codes if c) == ["401"] * 11
    later = await nc.request(subject, body, headers=headers, timeout=5)
    assert (later.headers or {}).get("Nats-Service-Error") == "replayed request"


async def test_everything_is_replicated_three_ways(nc: Client) -> None:
    owner = ControlClient(nc, Identity.generate())
    await create_room(owner, "replicated")
    js = nc.jetstream(timeout=5)
    for stream in (f"KV_{ROOM_BUCKET}", NONCE_STREAM, "UNIBUS_replicated"):
        assert (await js.stream_info(stream)).config.num_replicas == 3, stream


# What nats.go's jetstream.CreateOrUpdateStream sends for a room stream (pkg/client/persist.go):
# name, subject, limits, file storage, every other field at its zero value, replicas 0.
def go_client_update(room_id: str) -> dict[str, object]:
    return {
        "name": f"UNIBUS_{room_id}",
        "subjects": [f"unibus.room.{room_id}"],
        "retention": "limits",
        "max_consumers": 0,
        "max_msgs": 0,
        "max_bytes": 0,
        "discard": "old",
        "max_age": 0,
        "max_msgs_per_subject": 0,
        "storage": "file",
        "num_replicas": 0,
        "no_ack": False,
        "sealed": False,
        "deny_delete": False,
        "deny_purge": False,
        "allow_rollup_hdrs": False,
        "allow_direct": False,
        "mirror_direct": False,
    }


async def test_go_client_update_scales_down_and_the_service_restores_it(nc: Client) -> None:
    owner = ControlClient(nc, Identity.generate())
    await create_room(owner, "gopher")
    frames = await publish_stored(nc, "gopher", 30, "go")
    js = nc.jetstream(timeout=5)
    for _ in range(2):  # the Go client ensures on every start: the service undoes it each time
        reply = await nc.request(
            "$JS.API.STREAM.UPDATE.UNIBUS_gopher", json.dumps(go_client_update("gopher")).encode(), 5
        )
        answer = json.loads(reply.data)
        assert "error" not in answer, answer
        # What nats-server does (2.15.1): no error, the stream silently becomes R1, frames kept.
        assert answer["config"]["num_replicas"] == 1
        assert (await js.stream_info("UNIBUS_gopher")).state.messages == len(frames)
        assert await history(owner, "gopher") == frames
        assert (await js.stream_info("UNIBUS_gopher")).config.num_replicas == 3
