"""Shared fixtures: a real nats-server per test, and the control plane running on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from unibus.callout.keys import BoundaryKeys
from unibus.client import ControlClient, Identity
from unibus.natsserver import NatsServer, ServerSpec
from unibus.runner import Running

from harness.boundary import bounded_spec, connect_inspector, shipped_server
from harness.plane import StartPlane, plane_starter


@pytest.fixture
def inspector() -> Identity:
    return Identity.generate()


@pytest.fixture
def nats_server(tmp_path: Path, boundary_keys: BoundaryKeys, inspector: Identity) -> Iterator[NatsServer]:
    """A nats-server running the trust boundary, so every service under test works with
    only its own users' permissions; the suite's `nc` is a test-only user who may do
    anything (test_boundary.py attacks the shipped config without it)."""
    server = NatsServer(bounded_spec(tmp_path / "nats", boundary_keys, inspector)).start()
    yield server
    server.stop()


@pytest.fixture
def open_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server without the boundary: for what the boundary's fixed subjects do not
    cover (a second control prefix on the same JetStream)."""
    server = NatsServer(ServerSpec(store_dir=tmp_path / "open-nats")).start()
    yield server
    server.stop()


@pytest.fixture
def core_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server without JetStream, as some deployments run."""
    server = NatsServer(ServerSpec(store_dir=tmp_path / "nats-core", jetstream=False)).start()
    yield server
    server.stop()


@pytest.fixture
async def start_plane(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[StartPlane]:
    async with plane_starter(tmp_path, nats_server) as start:
        yield start


@pytest.fixture
async def plane(start_plane: StartPlane) -> Running:
    return await start_plane()


@pytest.fixture
async def nc(nats_server: NatsServer, inspector: Identity) -> AsyncIterator[Client]:
    conn = await connect_inspector(nats_server.url, inspector)
    yield conn
    await conn.close()


@pytest.fixture
def boundary_keys(tmp_path: Path) -> BoundaryKeys:
    return BoundaryKeys.ensure(tmp_path / "keys")


@pytest.fixture
def shipped_nats(tmp_path: Path, boundary_keys: BoundaryKeys) -> Iterator[NatsServer]:
    """nats-server on the shipped deploy/nats/standalone.conf: the trust boundary is on."""
    server = shipped_server(tmp_path / "shipped", boundary_keys).start()
    yield server
    server.stop()


@pytest.fixture
async def start_bounded(tmp_path: Path, shipped_nats: NatsServer) -> AsyncIterator[StartPlane]:
    """Control-plane instances on the shipped config, each answering the callout."""
    async with plane_starter(tmp_path, shipped_nats) as start:
        yield start


@pytest.fixture
async def bounded_plane(start_bounded: StartPlane) -> Running:
    return await start_bounded()


@pytest.fixture
def alice() -> Identity:
    return Identity.generate()


@pytest.fixture
def bob() -> Identity:
    return Identity.generate()


@pytest.fixture
def as_alice(nc: Client, alice: Identity, plane: Running) -> ControlClient:
    return ControlClient(nc, alice)


@pytest.fixture
def as_bob(nc: Client, bob: Identity, plane: Running) -> ControlClient:
    return ControlClient(nc, bob)
