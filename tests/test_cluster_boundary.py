"""The trust boundary on a three-node cluster: the auth callout answers for every node, and
a removal made through an instance on one node cuts a member connected to another."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from unibus.callout import serverconf
from unibus.callout.keys import BoundaryKeys
from unibus.client import Identity, NotFound, Peer
from unibus.wire.interest import confirm_interest

from harness.boundary import connect_as, reauthorize, refused_connect
from harness.cluster import Cluster
from harness.instances import ServiceInstance
from harness.retry import with_retries


@pytest.fixture
def bounded_cluster(tmp_path: Path) -> Iterator[tuple[Cluster, list[ServiceInstance]]]:
    keys = BoundaryKeys.ensure(tmp_path / "keys")
    cluster = Cluster(tmp_path / "cluster", boundary=serverconf.render(keys.public())).start()
    env = {"UNIBUS_KEYS_DIR": str(tmp_path / "keys")}
    instances = [
        ServiceInstance(f"svc{i}", cluster.urls[i], tmp_path / f"svc{i}", env).start() for i in range(2)
    ]
    yield cluster, instances
    for instance in instances:
        instance.stop()
    cluster.stop()


async def test_a_removal_on_one_node_cuts_a_member_on_another(
    bounded_cluster: tuple[Cluster, list[ServiceInstance]],
) -> None:
    cluster, _ = bounded_cluster
    alice, bob = Identity.generate(), Identity.generate()
    owner = await connect_as(cluster.urls[0], alice)
    member = await connect_as(cluster.urls[2], bob)
    try:
        peer = Peer(owner.nc, alice)
        await peer.create_room("spread")
        await peer.add_member("spread", bob.public_key)
        await reauthorize(member.nc)  # a grant cuts nobody: bob takes it up himself
        await member.nc.subscribe("unibus.room.spread")
        await member.nc.publish("unibus.room.spread", b"bob on n3")
        await member.nc.flush()
        assert not any("permissions violation" in e for e in member.errors), member.errors

        await peer.remove_member("spread", bob.public_key)
        # Bounded by the design (a revocation pass, a reconnect), not timed: make bench times it.
        assert await member.refused("subscription", "unibus.room.spread", within_s=3.0), member.errors
    finally:
        await owner.nc.close()
        await member.nc.close()


async def test_a_removal_is_cut_when_an_instances_node_is_lost(
    bounded_cluster: tuple[Cluster, list[ServiceInstance]],
) -> None:
    """n1, the node one instance (and its bucket watch) is on, is killed; a removal made
    meanwhile still cuts the member on n3, whichever instance acts on it."""
    cluster, _ = bounded_cluster
    alice, bob = Identity.generate(), Identity.generate()
    owner = await connect_as(cluster.urls[1], alice)
    peer = Peer(owner.nc, alice)
    await peer.create_room("lossy")
    await peer.add_member("lossy", bob.public_key)
    member = await connect_as(cluster.urls[2], bob)
    try:
        await member.nc.subscribe("unibus.room.lossy")
        await confirm_interest(member.nc)
        cluster.nodes[0].kill()

        async def remove(attempt: int) -> None:
            # A 503 while JetStream re-elects after the loss changed nothing: sent again. A
            # 404 on a retry means an earlier attempt was applied and its reply lost.
            with contextlib.suppress(NotFound) if attempt else contextlib.nullcontext():
                await peer.remove_member("lossy", bob.public_key)

        await with_retries(remove)
        # Bounded by the design, not timed (make bench times it): a revocation pass, then a
        # reconnect that may first try the dead node and wait out a callout or two while
        # the cluster settles (nats-py's connect timeout is 2 s).
        assert await member.refused("subscription", "unibus.room.lossy", within_s=10.0), member.errors
    finally:
        await owner.nc.close()
        await member.nc.close()


async def test_the_connection_limit_holds_across_nodes_and_instances(tmp_path: Path) -> None:
    """One identity's connections spread over three nodes and answered by two instances
    count together (docs/security.md, "Admission model"); another identity still connects."""
    keys = BoundaryKeys.ensure(tmp_path / "keys")
    cluster = Cluster(tmp_path / "cluster", boundary=serverconf.render(keys.public())).start()
    env = {"UNIBUS_KEYS_DIR": str(tmp_path / "keys"), "UNIBUS_MAX_CONNECTIONS_PER_IDENTITY": "6"}
    instances = [
        ServiceInstance(f"svc{i}", cluster.urls[i], tmp_path / f"svc{i}", env).start() for i in range(2)
    ]
    mallory = Identity.generate()
    held = []
    try:
        for i in range(6):
            held.append(await connect_as(cluster.urls[i % 3], mallory))
        for url in cluster.urls:
            assert "authorization violation" in (await refused_connect(url, mallory)).lower()
        other = await connect_as(cluster.urls[1], Identity.generate())
        await other.nc.close()
    finally:
        for watched in held:
            await watched.nc.close()
        for instance in instances:
            instance.stop()
        cluster.stop()
