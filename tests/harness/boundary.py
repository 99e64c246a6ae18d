"""nats-server run from the shipped deploy/nats/standalone.conf (only ports and directories
substituted), the control plane on it with the boundary's keys, and connections as
identities whose refusals are collected so a test can assert that the server said no."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client

from unibus.callout import serverconf
from unibus.callout.keys import BoundaryKeys
from unibus.identity import Identity
from unibus.natsserver import NatsServer, ServerSpec
from unibus.wire import connection
from unibus.wire.names import INBOXES

DEPLOY_NATS = Path(__file__).resolve().parents[2] / "deploy" / "nats"


class ShippedSpec(ServerSpec):
    """deploy/nats/standalone.conf with loopback ports the server picks and the test's
    store directory; boundary.conf is copied beside it unchanged."""

    conf = "standalone.conf"

    def render(self) -> str:
        text = (DEPLOY_NATS / self.conf).read_text()
        text = re.sub(r"(?m)^listen: 0\.0\.0\.0:4222$", f"listen: 127.0.0.1:{self.port or -1}", text)
        text = re.sub(r"(?m)^http: ([\d.]+):8222$", r"http: \1:-1", text)
        text = re.sub(r"listen: 0\.0\.0\.0:8080", f"listen: 127.0.0.1:{self.websocket_port or -1}", text)
        text = re.sub(r"listen: 0\.0\.0\.0:6222", f"listen: 127.0.0.1:{self.cluster_port}", text)
        text = text.replace("store_dir: /var/lib/unibus/jetstream", f'store_dir: "{self.store_dir}"')
        (self.store_dir / "boundary.conf").write_text((DEPLOY_NATS / "boundary.conf").read_text())
        return f'ports_file_dir: "{self.store_dir}"\n' + text

    def monitoring_url(self) -> str:
        """Where the running server's monitoring listens (it picked the port)."""
        ports = json.loads(next(self.store_dir.glob("*.ports")).read_text())
        return str(ports["monitoring"][0])


class ShippedClusterSpec(ShippedSpec):
    """deploy/nats/cluster.conf the same way: the node's name is `SERVER_NAME` and its
    seeds `UNIBUS_ROUTES`, from the environment as compose gives them."""

    conf = "cluster.conf"


def shipped_server(root: Path, keys: BoundaryKeys) -> NatsServer:
    spec = ShippedSpec(store_dir=root, websocket_port=0, server_name="shipped")
    return NatsServer(spec, env=boundary_env(keys))


def boundary_env(keys: BoundaryKeys, **extra: str) -> dict[str, str]:
    """The environment `boundary.env` gives a node: the public keys (and what `extra` adds)."""
    return {f"UNIBUS_{role}_KEY": key for role, key in keys.public().items()} | extra


@dataclass
class Watched:
    """A connection and what the server refused it (its -ERR lines, lower-cased)."""

    nc: Client
    errors: list[str] = field(default_factory=list)

    async def refused(self, verb: str, subject: str, within_s: float = 3.0) -> bool:
        """Whether the server reported a permissions violation for `verb` (publish or
        subscription) on `subject`."""
        wanted = f'permissions violation for {verb} to "{subject}"'.lower()
        deadline = asyncio.get_running_loop().time() + within_s
        while asyncio.get_running_loop().time() < deadline:
            if any(wanted in e for e in self.errors):
                return True
            await asyncio.sleep(0.01)
        return False


async def denied_request(who: Watched, subject: str, body: bytes = b"", timeout_s: float = 1.0) -> None:
    """A request the server must refuse to carry: a violation, and never a reply."""
    try:
        await who.nc.request(subject, body, timeout=timeout_s)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        pass
    else:
        raise AssertionError(f"{subject} was answered")
    assert await who.refused("publish", subject), who.errors


async def connect_as(url: str, identity: Identity | None, *, inbox: str | None = None) -> Watched:
    """Connected as `identity` (None: no credentials at all), reconnecting like a peer."""
    watched = Watched(None)  # type: ignore[arg-type]

    async def record(exc: Exception) -> None:
        watched.errors.append(str(exc).lower())

    opts = connection.options(url, name="test-peer", identity=identity, inbox=inbox, error_cb=record)
    watched.nc = await connection.connect_once(opts)
    return watched


async def refused_connect(url: str, identity: Identity | None = None, **extra: object) -> str:
    """The error a connection attempt ends in; fails the test if it is admitted."""
    opts = connection.options(url, name="test-refused", identity=identity, **extra)
    try:
        nc = await connection.connect_once(opts)
    except nats.errors.Error as exc:
        return str(exc)
    await nc.close()
    raise AssertionError("the connection was admitted")


@contextlib.asynccontextmanager
async def as_role(url: str, keys: BoundaryKeys, role: str) -> AsyncIterator[Watched]:
    """Connected as one of the boundary's static users (the shim, the service, …)."""
    watched = await connect_as(url, keys.users[role], inbox=INBOXES[role])
    try:
        yield watched
    finally:
        await watched.nc.close()


def with_inspector(config: str, inspector: Identity) -> str:
    """The boundary's server config plus one test-only static user who may do anything:
    the suite's own connection, which sets up and inspects state (purging a stream,
    publishing as any peer) while the service itself runs with only its own permissions."""
    user = f'{{ nkey: "{inspector.public_key}", permissions: {{ publish: ">", subscribe: ">" }} }}'
    head, sep, tail = config.partition("users: [\n")
    assert sep, "the UNIBUS account lists its users"
    config = f"{head}{sep}      {user}\n{tail}"
    return config.replace("auth_users: [", f'auth_users: ["{inspector.public_key}", ', 1)


INSPECTOR_INBOX = "_INBOX.unibus-test-inspector"


async def connect_inspector(url: str, inspector: Identity) -> Client:
    """The suite's own connection, as the inspector user `with_inspector` adds."""
    opts = connection.options(url, name="inspector", identity=inspector, inbox=INSPECTOR_INBOX)
    return await connection.connect_once(opts)


def bounded_spec(root: Path, keys: BoundaryKeys, inspector: Identity, **spec: object) -> ServerSpec:
    """A nats-server spec that runs the boundary with the inspector user added."""
    server = ServerSpec(store_dir=root, **spec)  # type: ignore[arg-type]
    server.extra = with_inspector(serverconf.render(keys.public()), inspector)
    return server


async def reauthorize(nc: Client, within_s: float = 5.0) -> None:
    """Reconnect and wait until back under current permissions: how a peer takes up a room
    it was granted (a grant cuts nobody; docs/protocol.md, "Staying connected")."""
    before = nc.stats["reconnects"]
    await nc.force_reconnect()
    for _ in range(int(within_s / 0.01)):
        if nc.stats["reconnects"] > before and nc.is_connected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the connection was not re-authorized")
