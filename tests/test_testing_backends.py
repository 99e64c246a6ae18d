"""unibus.testing: the stack a peer's suite gets, through each backend and through the
pytest plugin, and `unibus health`, the probe the image and the backends rely on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from unibus.client import ControlClient, Identity
from unibus.natsserver import NatsServer
from unibus.testing import (
    BACKEND_ENV,
    IMAGE_ENV,
    Backend,
    BackendUnavailable,
    ProcessBackend,
    Stack,
    backend_from_env,
    docker_unavailable_reason,
    started,
)
from unibus.wire import connection

from harness.docker import require_docker

UNIBUS = str(Path(sys.executable).parent / "unibus")
NO_DOCKER = docker_unavailable_reason()


async def create_publish_read(stack: Stack, room_id: str) -> None:
    """What a peer does first: connect as itself (the stack runs the trust boundary), a
    signed create, frames over core NATS, the backlog back."""
    me = Identity.generate()
    nc = await connection.connect_once(connection.options(stack.nats_url, name="peer", identity=me))
    try:
        client = ControlClient(nc, me)
        room = await client.create_room(room_id)
        frames = [b"first", b"\x00\xffsecond", b"third"]
        for frame in frames:
            await nc.publish(room["subject"], frame)
        await nc.flush()
        for _ in range(200):  # bounded: the stream captures asynchronously
            page = await client.history(room_id)
            if len(page.frames) == len(frames):
                break
            await asyncio.sleep(0.05)
        assert page.frames == frames
    finally:
        await nc.close()


def http_json(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_fixture_stack_serves_create_publish_history(unibus_stack: Stack) -> None:
    assert unibus_stack.backend == ("process" if NO_DOCKER else "container")
    await create_publish_read(unibus_stack, "fixture-room")


def test_fixture_stack_has_websocket_and_a_healthy_shim(unibus_stack: Stack) -> None:
    assert unibus_stack.websocket_url is not None and unibus_stack.websocket_url.startswith("ws://")
    assert unibus_stack.shim_url is not None
    assert http_json(f"{unibus_stack.shim_url}/healthz") == (200, {"nats": "connected", "service": "ok"})


@pytest.fixture(params=["process", pytest.param("container", marks=pytest.mark.docker)])
def any_backend_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Each backend on its own, so both are exercised wherever they can run."""
    if request.param == "container":
        require_docker()
        from unibus.testing.container import ContainerBackend

        backend: Backend = ContainerBackend(os.environ.get(IMAGE_ENV))
    else:
        backend = ProcessBackend()
    with started(backend) as stack:
        yield stack


async def test_each_backend_serves_create_publish_history(any_backend_stack: Stack) -> None:
    await create_publish_read(any_backend_stack, "backend-room")
    status, _ = http_json(f"{any_backend_stack.shim_url}/healthz")
    assert status == 200


def test_service_env_reaches_the_service(tmp_path: Path) -> None:
    """Settings are the caller's, not leaked from the environment: dev mode admits unsigned."""

    async def unsigned_create(stack: Stack) -> dict[str, object]:
        nc = await nats.connect(stack.nats_url)  # dev mode admits a connection without an nkey
        try:
            return await ControlClient(nc, None).create_room("unsigned", owner=Identity.generate().public_key)
        finally:
            await nc.close()

    with started(ProcessBackend({"UNIBUS_AUTH_MODE": "dev"}, workdir=tmp_path, shim=False)) as stack:
        assert stack.shim_url is None
        assert asyncio.run(unsigned_create(stack))["id"] == "unsigned"


def test_a_service_that_cannot_start_fails_fast_with_its_log(tmp_path: Path) -> None:
    # NATS micro refuses the name, so `unibus serve` exits during its start.
    backend = ProcessBackend({"UNIBUS_SERVICE_NAME": "not.a.valid.name"}, workdir=tmp_path)
    with pytest.raises(RuntimeError, match="exited before it was ready") as failure, started(backend):
        pass
    assert "Invalid name" in str(failure.value)  # the service's own words, from its log
    assert backend._server is None and backend._children == []


def test_backend_choice_follows_the_environment() -> None:
    assert isinstance(backend_from_env({BACKEND_ENV: "process"}), ProcessBackend)
    with pytest.raises(ValueError, match="expected one of"):
        backend_from_env({BACKEND_ENV: "vm"})


@pytest.mark.skipif(NO_DOCKER is None, reason="a Docker engine is reachable here")
def test_without_docker_auto_falls_back_and_container_says_why() -> None:
    assert isinstance(backend_from_env({}), ProcessBackend)
    with pytest.raises(BackendUnavailable, match="Docker engine"):
        backend_from_env({BACKEND_ENV: "container"})


def run_health(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIBUS_")}
    return subprocess.run([UNIBUS, "health", *args], env=env, capture_output=True, text=True, timeout=60)


def test_health_probe_passes_when_the_service_answers(unibus_stack: Stack) -> None:
    over_nats = run_health("--nats-url", unibus_stack.nats_url)
    assert over_nats.returncode == 0, over_nats.stderr
    through_shim = run_health("--url", f"{unibus_stack.shim_url}/healthz")
    assert through_shim.returncode == 0, through_shim.stderr


def test_health_probe_fails_on_a_nats_without_the_service(
    open_nats_server: NatsServer, nats_server: NatsServer
) -> None:
    result = run_health("--nats-url", open_nats_server.url, "--timeout", "1")
    assert result.returncode == 1
    assert "no instance of unibus-control-plane" in result.stderr
    # Under the boundary nobody is admitted while no instance answers the callout.
    bounded = run_health("--nats-url", nats_server.url, "--timeout", "1")
    assert bounded.returncode == 1
    assert "no control plane answering the auth callout" in bounded.stderr


def test_health_probe_fails_when_nothing_listens(nats_server: NatsServer) -> None:
    url = nats_server.url
    nats_server.stop()
    result = run_health("--nats-url", url, "--timeout", "1")
    assert result.returncode == 1
    assert f"cannot connect to {url}" in result.stderr


def test_a_peer_suite_gets_the_fixture_from_the_installed_plugin(tmp_path: Path) -> None:
    """No conftest, no import of unibus.testing: the pytest11 entry point provides it."""
    (tmp_path / "test_peer.py").write_text(
        textwrap.dedent(
            """
            import json, urllib.request

            def test_the_stack_is_up(unibus_stack):
                url = unibus_stack.shim_url + "/healthz"
                assert json.loads(urllib.request.urlopen(url, timeout=5).read())["service"] == "ok"
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIBUS_")} | {BACKEND_ENV: "process"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_peer.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_plugin_loads_without_the_optional_dependencies() -> None:
    """It loads into every pytest run where unibus is installed, so it must not need the
    shim's aiohttp or testcontainers until a test asks for the stack."""
    blocked = "import sys; sys.modules.update(aiohttp=None, testcontainers=None); "
    result = subprocess.run(
        [sys.executable, "-c", blocked + "import unibus.testing.fixtures"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
