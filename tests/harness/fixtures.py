"""pytest fixtures over the harness. Processes are started synchronously (they are plain
subprocesses), so the same fixtures serve function- and module-scoped tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from unibus.natsserver import NatsServer, ServerSpec

from .cluster import Cluster, connect_all
from .instances import ServiceInstance, Spawn


def _spawner(cluster_urls: list[str], root: Path, started: list[ServiceInstance]) -> Spawn:
    def spawn(count: int, env: dict[str, str] | None = None) -> list[ServiceInstance]:
        """`count` more instances, spread over the nodes (instance i seeds from node i mod n)."""
        new = []
        for _ in range(count):
            i = len(started)
            instance = ServiceInstance(f"svc{i + 1}", cluster_urls[i % len(cluster_urls)], root / "svc", env)
            started.append(instance)
            new.append(instance.start())
        return new

    return spawn


def _stop_all(instances: list[ServiceInstance]) -> None:
    for instance in instances:
        with contextlib.suppress(Exception):
            instance.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster").start()
    yield running
    running.stop()


@pytest.fixture
def spawn(cluster: Cluster, tmp_path: Path) -> Iterator[Spawn]:
    started: list[ServiceInstance] = []
    yield _spawner(cluster.urls, tmp_path, started)
    _stop_all(started)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("cluster")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def shared_instances(shared_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawn]:
    started: list[ServiceInstance] = []
    yield _spawner(shared_cluster.urls, tmp_path_factory.mktemp("svc"), started)
    _stop_all(started)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, ServiceInstance]]:
    """One JetStream server (R1) and one service subprocess on it."""
    root = tmp_path_factory.mktemp("standalone")
    server = NatsServer(ServerSpec(store_dir=root / "nats", server_name="solo")).start()
    instance = ServiceInstance("svc-solo", server.url, root / "svc").start()
    yield server, instance
    instance.stop()
    server.stop()


@pytest.fixture
async def cluster_nc(cluster: Cluster) -> AsyncIterator[Client]:
    nc = await connect_all(cluster.urls)
    yield nc
    await nc.close()
