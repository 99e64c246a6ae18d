"""deploy/compose.yaml as shipped, on a real Docker engine: up, healthy, used from the host
through its loopback ports as a peer would (NATS, websocket, the shim), attacked as a
stranger would, one NATS node stopped, and `down -v` leaving nothing behind.

Needs the images the compose file names, the app's and NATS's (`make test-containers`
builds the one and pulls the other, or builds its stand-in, and runs this with
UNIBUS_REQUIRE_DOCKER=1, so there it never skips)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Iterator

import aiohttp
import pytest
import yaml
from nats.aio.client import Client

from unibus.client import ControlClient, Identity, Unavailable
from unibus.wire import connection
from unibus.wire.names import ROOM_BUCKET
from unibus.wire.signing import sign_request

from harness.boundary import connect_as, denied_request, refused_connect
from harness.compose import COMPOSE_FILE, ComposeProject, compose_command, docker
from harness.docker import require_image, unavailable

pytestmark = pytest.mark.docker

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
IMAGE = COMPOSE["x-image"]["image"]
NATS_IMAGE = COMPOSE["x-nats-node"]["image"]
PREFIX = "$UNIBUS.CTL"


@pytest.fixture(scope="module")
def stack() -> Iterator[ComposeProject]:
    require_image(IMAGE)
    require_image(NATS_IMAGE)
    command = compose_command()
    if command is None:
        unavailable("neither `docker compose` nor `docker-compose` is installed")
    project = ComposeProject(f"unibus-smoke-{os.getpid()}", command)
    try:
        project.compose("up", "--no-build", "-d")
        project.wait_healthy()
        yield project
    finally:
        project.compose("down", "-v", "--remove-orphans")


async def peer(url: str, identity: Identity) -> Client:
    return await connection.connect_once(connection.options(url, name="smoke-peer", identity=identity))


async def history_until(client: ControlClient, room: str, count: int, within_s: float = 30.0) -> list[bytes]:
    """History once it holds `count` frames; retried through 503 while JetStream elects."""
    deadline = asyncio.get_running_loop().time() + within_s
    frames: list[bytes] = []
    while asyncio.get_running_loop().time() < deadline:
        try:
            frames = (await client.history(room)).frames
        except (Unavailable, TimeoutError):
            frames = []
        if len(frames) >= count:
            return frames
        await asyncio.sleep(0.2)
    raise AssertionError(f"{room}: {len(frames)} of {count} frames within {within_s}s")


async def shim_history(stack: ComposeProject, identity: Identity, room: str) -> tuple[int, dict[str, object]]:
    query = "limit=10"
    headers = sign_request(identity, f"{PREFIX}.rooms.{room}.history", query.encode())
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{stack.shim_url}/rooms/{room}/history?{query}", headers=headers) as response,
    ):
        return response.status, await response.json()


def test_every_service_comes_up_healthy(stack: ComposeProject) -> None:
    states = stack.states()
    assert states.pop("keys") == "exited:0"  # the one-shot that made the boundary's seeds
    assert states == dict.fromkeys(
        ("nats-1", "nats-2", "nats-3", "control-plane-a", "control-plane-b", "shim"), "healthy"
    )
    published = {
        binding["HostIp"]
        for info in stack.containers()
        for bindings in (info["NetworkSettings"]["Ports"] or {}).values()
        for binding in bindings or []
    }
    assert published == {"127.0.0.1"}


async def test_a_peer_creates_publishes_over_nats_and_websocket_and_reads_back(stack: ComposeProject) -> None:
    alice = Identity.generate()
    nc = await peer(stack.nats_url, alice)
    client = ControlClient(nc, alice)
    room = await client.create_room("smoke")
    # Connected after the create, so its grant holds the room: a grant cuts nobody, and a
    # connection older than the room takes it up only when it re-authorizes (protocol.md).
    ws = await peer(stack.websocket_url, alice)
    try:
        await nc.publish(room["subject"], b"over tcp")
        await nc.flush()
        await history_until(client, "smoke", 1)
        await ws.publish(room["subject"], b"\x00over the websocket\xff")
        await ws.flush()
        frames = await history_until(client, "smoke", 2)
        assert frames == [b"over tcp", b"\x00over the websocket\xff"]
        status, body = await shim_history(stack, alice, "smoke")
        assert status == 200
        assert [base64.b64decode(m) for m in body["messages"]] == frames  # type: ignore[attr-defined]
        status, body = await shim_history(stack, Identity.generate(), "smoke")
        assert status == 403, body
    finally:
        await nc.close()
        await ws.close()


async def test_a_stranger_gets_no_jetstream_no_bucket_and_no_other_room(stack: ComposeProject) -> None:
    alice = Identity.generate()
    nc = await peer(stack.nats_url, alice)
    stranger = await connect_as(stack.nats_url, Identity.generate())
    try:
        await ControlClient(nc, alice).create_room("private")
        assert "authorization violation" in (await refused_connect(stack.nats_url)).lower()
        await denied_request(stranger, "$JS.API.INFO")
        await denied_request(stranger, f"$JS.API.STREAM.INFO.KV_{ROOM_BUCKET}")
        await denied_request(stranger, f"$JS.API.DIRECT.GET.KV_{ROOM_BUCKET}.$KV.{ROOM_BUCKET}.private")
        await denied_request(stranger, "$JS.API.STREAM.PURGE.UNIBUS_private")
        await stranger.nc.publish(f"$KV.{ROOM_BUCKET}.private", b"{}")
        assert await stranger.refused("publish", f"$KV.{ROOM_BUCKET}.private")
        await stranger.nc.subscribe("unibus.room.private")
        assert await stranger.refused("subscription", "unibus.room.private")
        await stranger.nc.publish("unibus.room.private", b"forged")
        assert await stranger.refused("publish", "unibus.room.private")
        await stranger.nc.subscribe(f"{PREFIX}.rooms.>")
        assert await stranger.refused("subscription", f"{PREFIX}.rooms.>")
    finally:
        await nc.close()
        await stranger.nc.close()


async def test_history_is_served_with_one_nats_node_stopped(stack: ComposeProject) -> None:
    alice = Identity.generate()
    nc = await peer(stack.nats_url, alice)
    try:
        client = ControlClient(nc, alice)
        room = await client.create_room("survivor")
        frames = [f"frame {i}".encode() for i in range(20)]
        for frame in frames:
            await nc.publish(room["subject"], frame)
        await nc.flush()
        await history_until(client, "survivor", len(frames))
        stack.compose("stop", "nats-2")  # control-plane-b's seed
        assert await history_until(client, "survivor", len(frames)) == frames
        for _ in range(10):  # both instances of the queue group answer, one node down
            assert (await client.history("survivor")).frames == frames
    finally:
        await nc.close()


def routes_of(stack: ComposeProject, node: str) -> set[str]:
    """The servers `node` has routes with, from its monitoring, read inside its container
    (the only place monitoring answers)."""
    routez = stack.compose("exec", "-T", node, "wget", "-qO-", "http://127.0.0.1:8222/routez")
    return {route["remote_name"] for route in json.loads(routez)["routes"] or []}


def test_a_rogue_node_on_the_network_is_refused_a_route_and_monitoring(stack: ComposeProject) -> None:
    """A nats-server the attacker runs on the compose network, dialing nats-1's route port
    without the route password, is refused; and monitoring does not answer on the
    network (only on each node's own loopback)."""
    members = routes_of(stack, "nats-1")  # nats-3 at least: an earlier test stops nats-2
    assert members and members <= {"nats-2", "nats-3"}
    network = f"{stack.name}_default"
    rogue = docker(
        "run", "-d", "--rm", "--network", network, NATS_IMAGE,
        "nats-server", "--name", "rogue", "--cluster_name", "unibus",
        "--cluster", "nats://0.0.0.0:6222", "--routes", "nats-route://nats-1:6222",
    ).strip()  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "authentication error" not in stack.compose("logs", "nats-1"):
            assert time.monotonic() < deadline, "the rogue never tried"
            time.sleep(0.5)
        assert routes_of(stack, "nats-1") == members
        probe = "import urllib.request; urllib.request.urlopen('http://nats-1:8222/varz', timeout=5)"
        with pytest.raises(RuntimeError, match="Connection refused"):
            stack.compose("exec", "-T", "shim", "python", "-c", probe)
    finally:
        docker("rm", "-f", rogue)


def test_down_leaves_no_containers_networks_or_volumes(stack: ComposeProject) -> None:
    assert stack.leftovers()["volumes"]  # up made them; down must remove them
    stack.compose("down", "-v", "--remove-orphans")
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
