"""Three nats-server processes on loopback as one JetStream cluster.

Each node has its own store directory and a monitoring port; `/healthz` on that port is
how the harness knows a node is back *and caught up* (JetStream meta and every stream
current), which is the only honest "ready" after a restart.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import nats
from nats.aio.client import Client

from unibus.natsserver import NatsServer, ServerSpec, free_port

CLUSTER_NAME = "unibus-test"


class Node(NatsServer):
    def __init__(self, spec: ServerSpec) -> None:
        super().__init__(spec)
        self.name = spec.server_name

    @property
    def monitor_port(self) -> int:
        """Picked by nats-server at the first start (no window for another process to
        take it) and kept for restarts."""
        return self.spec.monitor_port

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:  # loopback monitoring only
                return bool(reply.status == 200 and json.load(reply).get("status") == "ok")
        except (urllib.error.URLError, OSError, ValueError):
            return False


class Cluster:
    """`nodes[i]` can be stopped, killed and started again on the same ports and store."""

    def __init__(self, root: Path, size: int = 3, boundary: str = "") -> None:
        """`boundary`: server configuration every node adds (the trust boundary's block)."""
        names = [f"n{i + 1}" for i in range(size)]
        cluster_ports = [free_port() for _ in names]
        self.nodes: list[Node] = []
        for i, name in enumerate(names):
            spec = ServerSpec(
                store_dir=root / name,
                server_name=name,
                cluster_name=CLUSTER_NAME,
                cluster_port=cluster_ports[i],
                routes=[p for j, p in enumerate(cluster_ports) if j != i],
                monitor_port=0,
                extra=boundary,
            )
            self.nodes.append(Node(spec))

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self, wait_s: float = 30.0) -> Cluster:
        for node in self.nodes:
            node.start()
        self.wait_healthy(wait_s)
        return self

    def wait_healthy(self, wait_s: float = 30.0) -> None:
        """Every running node answers /healthz ok: routes up, a meta leader, streams current."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if all(node.healthy() for node in self.nodes if node.running):
                return
            time.sleep(0.1)
        sick = [node.name for node in self.nodes if node.running and not node.healthy()]
        raise TimeoutError(f"nodes not healthy within {wait_s}s: {sick}")

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()


async def connect_all(urls: list[str]) -> Client:
    """A client seeded with every node, so it follows the cluster through a node's loss."""
    return await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
