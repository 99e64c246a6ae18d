"""Shared fixtures: a real nats-server per test, and the control plane running on it; and
how `make test` spreads the tests over its workers."""

from __future__ import annotations

import inspect
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

OUR_SOURCES = [Path(__file__).resolve().parent, Path(inspect.getfile(NatsServer)).resolve().parent]
"""tests/ and the `unibus` package (its pytest plugin's `unibus_stack`)."""
SHARED_SCOPES = {"class", "module", "package", "session"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` hands tests to its workers one at a time (`--dist loadgroup`), so that
    a file of slow tests does not keep one worker busy while the others idle. A test
    that uses a fixture of ours set up once for many tests (a cluster, a Go build, a
    wheel, the `unibus_stack`) goes to one worker with the rest of its file, so that
    fixture is still made once. (Runs before xdist reads the `xdist_group` marks.)"""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = any(
            fixture.scope in SHARED_SCOPES and _ours(fixture.func)
            for defs in info.name2fixturedefs.values()
            for fixture in defs
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.path.name))


def _ours(func: object) -> bool:
    """Defined in this repository (tests/ or the `unibus.testing` plugin), not by pytest
    or a plugin (pytest-asyncio's session-wide event loop policy is not a shared server)."""
    source = inspect.getsourcefile(inspect.unwrap(func))  # type: ignore[arg-type]
    return source is not None and any(Path(source).resolve().is_relative_to(d) for d in OUR_SOURCES)


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
