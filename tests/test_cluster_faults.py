"""Faults on a three-node JetStream cluster with service instances as real subprocesses:
a NATS node killed under load, every node restarted in turn, a service instance killed
with SIGKILL under load. "Nothing lost" is checked against the retry policy in
`harness.retry` and against what JetStream acknowledged before the fault."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.aio.client import Client

from unibus.client import ControlClient, Forbidden, Identity
from unibus.wire.names import ROOM_BUCKET

from harness import Cluster, Outcome, Spawn, create_room, steady, with_retries
from harness.checks import assert_rows_match_streams, history, instances_answering, publish_stored

pytest_plugins = ["harness.fixtures"]
pytestmark = pytest.mark.timeout(180)

ROOMS_BEFORE = 4
FRAMES_PER_ROOM = 25
LOAD = {"UNIBUS_CREATOR_STORE_BYTES": str(64 * 2**30), "UNIBUS_CREATES_PER_SECOND": "1000"}
"""The load is one identity creating rooms as fast as it can, which the admission limits
(docs/security.md) would answer 403/429 by design: these tests are about faults, so the
instances lift the per-identity store budget and creation rate."""


async def seed(nc: Client, client: ControlClient, tag: str) -> dict[str, list[bytes]]:
    """Rooms created, and frames acknowledged by JetStream, before any fault."""
    seeded = {}
    for i in range(ROOMS_BEFORE):
        room_id = f"{tag}-before-{i}"
        await create_room(client, room_id)
        seeded[room_id] = await publish_stored(nc, room_id, FRAMES_PER_ROOM, tag)
    return seeded


def mixed_load(  # type: ignore[no-untyped-def]
    client: ControlClient, tag: str, seeded: list[str], created: list[str], attempts: list[int]
):
    """Even operations create a room, odd ones read a seeded room's history; all retried."""

    async def op(i: int) -> None:
        outcome = Outcome()
        if i % 2 == 0:
            room_id = f"{tag}-during-{i}"
            await create_room(client, room_id, outcome=outcome)
            created.append(room_id)
        else:
            room_id = seeded[i % len(seeded)]
            await with_retries(lambda _: client.history(room_id, limit=10), outcome=outcome)
        attempts.append(outcome.attempts)

    return op


def retried(attempts: list[int]) -> str:
    return f"{sum(a > 1 for a in attempts)} operations retried, at most {max(attempts)} attempts"


async def assert_nothing_lost(
    client: ControlClient, nc: Client, seeded: dict[str, list[bytes]], created: list[str]
) -> None:
    for room_id in [*seeded, *created]:
        info = await with_retries(lambda _, r=room_id: client.info(r))
        assert info["owner"] == client.identity.public_key  # type: ignore[union-attr]
    for room_id, frames in seeded.items():
        assert await history(client, room_id) == frames
    await assert_rows_match_streams(nc)


async def kv_leader(nc: Client) -> str:
    info = await nc.jetstream(timeout=5).stream_info(f"KV_{ROOM_BUCKET}")
    assert info.cluster is not None and info.cluster.leader
    return info.cluster.leader


async def test_killing_one_nats_node_under_load_loses_nothing(
    cluster: Cluster, spawn: Spawn, cluster_nc: Client
) -> None:
    spawn(2, env=LOAD)
    client = ControlClient(cluster_nc, Identity.generate(), timeout_s=3.0)
    seeded = await seed(cluster_nc, client, "kill")
    created: list[str] = []
    attempts: list[int] = []
    victim = cluster.node(await kv_leader(cluster_nc))  # the room bucket's leader: the worst node to lose

    async def fault() -> None:
        await asyncio.sleep(3)
        victim.kill()

    load, _ = await asyncio.gather(
        steady(10, 12, mixed_load(client, "kill", list(seeded), created, attempts)), fault()
    )
    print(f"\nnode {victim.name} killed (SIGKILL) at 3 s: {load.summary()}; {retried(attempts)}")
    assert load.errors == []
    await assert_nothing_lost(client, cluster_nc, seeded, created)
    assert await kv_leader(cluster_nc) != victim.name


AFTER_THE_ROLL_S = 3.0
"""How long the load goes on once the last node is back and healthy."""


async def test_rolling_restart_of_every_node(cluster: Cluster, spawn: Spawn, cluster_nc: Client) -> None:
    instances = spawn(2, env=LOAD)
    alice, bob = Identity.generate(), Identity.generate()
    client = ControlClient(cluster_nc, alice, timeout_s=3.0)
    seeded = await seed(cluster_nc, client, "roll")
    created: list[str] = []
    attempts: list[int] = []

    rolled = asyncio.Event()

    async def restart_each() -> None:
        for node in cluster.nodes:
            await asyncio.to_thread(node.stop)
            await asyncio.sleep(1)
            await asyncio.to_thread(node.start)
            await asyncio.to_thread(cluster.wait_healthy, 60)
        await asyncio.sleep(AFTER_THE_ROLL_S)
        rolled.set()

    started = time.monotonic()
    roll = mixed_load(client, "roll", list(seeded), created, attempts)
    # The load lasts as long as the roll does (however slow the machine), and a while after.
    load, _ = await asyncio.gather(steady(5, 180, roll, until=rolled), restart_each())
    took = time.monotonic() - started
    print(f"\nrolling restart of 3 nodes in {took:.0f} s: {load.summary()}; {retried(attempts)}")
    assert load.errors == []
    assert all(instance.running for instance in instances)
    for _ in range(30):  # reconnects are the instances' own doing: give them a bounded while
        if await instances_answering(cluster_nc) == len(instances):
            break
    assert await instances_answering(cluster_nc) == len(instances), "an instance did not reconnect"
    await assert_nothing_lost(client, cluster_nc, seeded, created)

    # Every instance still follows the room bucket: a revocation is enforced everywhere.
    room_id = next(iter(seeded))
    await with_retries(lambda _: client.add_member(room_id, bob.public_key))
    as_bob = ControlClient(cluster_nc, bob, timeout_s=3.0)
    await with_retries(lambda _: as_bob.info(room_id))
    await with_retries(lambda _: client.remove_member(room_id, bob.public_key))
    for _ in range(20):
        with pytest.raises(Forbidden):
            await with_retries(lambda _: as_bob.info(room_id))


async def test_killing_a_service_instance_under_load(
    cluster: Cluster, spawn: Spawn, cluster_nc: Client
) -> None:
    instances = spawn(3, env=LOAD)
    client = ControlClient(cluster_nc, Identity.generate(), timeout_s=3.0)
    created: list[str] = []
    attempts: list[int] = []

    async def creates(i: int) -> None:
        outcome = Outcome()
        await create_room(client, f"crash-{i}", outcome=outcome)
        created.append(f"crash-{i}")
        attempts.append(outcome.attempts)

    async def fault() -> None:
        await asyncio.sleep(2)
        instances[0].kill()

    load, _ = await asyncio.gather(steady(20, 6, creates), fault())
    print(f"\ninstance {instances[0].name} killed (SIGKILL) at 2 s: {load.summary()}; {retried(attempts)}")
    assert load.errors == []
    assert not instances[0].running and all(i.running for i in instances[1:])
    await assert_nothing_lost(client, cluster_nc, {}, created)
