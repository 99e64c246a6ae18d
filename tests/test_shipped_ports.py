"""The shipped nats-server configs' other doors: the route port admits only nodes that
know the route password, and monitoring answers on loopback only. Each runs the file in
deploy/nats with only ports and directories substituted (harness/boundary.py)."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from unibus.callout.keys import BoundaryKeys
from unibus.callout.routes import ROUTE_USER, ensure_route_password
from unibus.natsserver import NatsServer, ServerSpec, free_port, running

from harness.boundary import ShippedClusterSpec, ShippedSpec, boundary_env
from harness.waiting import wait_until


def route_urls(password: str, ports: list[int]) -> str:
    """`UNIBUS_ROUTES` as compose.yaml builds it, with loopback ports for node names."""
    return "[" + ", ".join(f"nats-route://{ROUTE_USER}:{password}@127.0.0.1:{p}" for p in ports) + "]"


def monitoring(spec: ShippedSpec, path: str, host: str = "127.0.0.1") -> dict[str, object]:
    port = int(spec.monitoring_url().rsplit(":", 1)[1])
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as reply:
        answer: dict[str, object] = json.load(reply)
        return answer


def route_names(node: NatsServer) -> set[str]:
    assert isinstance(node.spec, ShippedSpec)
    routes = monitoring(node.spec, "/routez")["routes"] or []
    return {str(r["remote_name"]) for r in routes}  # type: ignore[index, union-attr]


def refusals(node: NatsServer) -> int:
    return node.log_path.read_text(errors="replace").count("authentication error")


@pytest.fixture
def shipped_cluster(tmp_path: Path, boundary_keys: BoundaryKeys) -> Iterator[list[NatsServer]]:
    """Two nodes of deploy/nats/cluster.conf, each given the route password and the seeds
    as compose gives them."""
    password = ensure_route_password(tmp_path / "keys")
    ports = [free_port(), free_port()]
    nodes = []
    for name, port in zip(("nats-1", "nats-2"), ports, strict=True):
        spec = ShippedClusterSpec(store_dir=tmp_path / name, server_name=name, cluster_port=port)
        env = boundary_env(
            boundary_keys,
            SERVER_NAME=name,
            UNIBUS_ROUTE_PASSWORD=password,
            UNIBUS_ROUTES=route_urls(password, ports),
        )
        nodes.append(NatsServer(spec, env=env))
    with running(nodes):
        yield nodes


async def test_a_rogue_route_is_refused_and_a_node_with_the_password_joins(
    tmp_path: Path, shipped_cluster: list[NatsServer]
) -> None:
    first, _ = shipped_cluster
    await wait_until(lambda: route_names(first) == {"nats-2"}, "nats-2 has joined nats-1", within_s=20.0)
    before = refusals(first)
    cluster_port = first.spec.cluster_port
    # A nats-server of the attacker's own: the cluster's name, the seed, no password; and
    # one that guesses a password.
    rogues = [
        ServerSpec(
            store_dir=tmp_path / "rogue", server_name="rogue", cluster_name="unibus", routes=[cluster_port]
        ),
        ServerSpec(
            store_dir=tmp_path / "guesser",
            server_name="guesser",
            extra=(
                'cluster { name: unibus, listen: "127.0.0.1:-1", routes: '
                f'["nats-route://{ROUTE_USER}:guess@127.0.0.1:{cluster_port}"] }}'
            ),
        ),
    ]
    started = [NatsServer(spec).start() for spec in rogues]
    try:
        await wait_until(lambda: refusals(first) >= before + 2, "both rogues tried nats-1", within_s=20.0)
        assert route_names(first) == {"nats-2"}
    finally:
        for rogue in started:
            rogue.stop()


def test_monitoring_answers_on_loopback_only(shipped_nats: NatsServer) -> None:
    """The shipped standalone.conf: /healthz answers on 127.0.0.1 (the health checks run
    there), and nothing answers on this machine's other address."""
    assert isinstance(shipped_nats.spec, ShippedSpec)
    assert monitoring(shipped_nats.spec, "/healthz") == {"status": "ok"}
    elsewhere = outward_address()
    port = int(shipped_nats.spec.monitoring_url().rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((elsewhere, port), timeout=5).close()


def outward_address() -> str:
    """This machine's address on its network (not loopback), or skip where it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            pytest.skip("no network interface besides loopback")
        address = str(probe.getsockname()[0])
    if re.match(r"127\.", address):
        pytest.skip("no network interface besides loopback")
    return address
