"""Revocation on the data plane (docs/security.md, "Membership changes reach the data
plane"): how long a removed member keeps a room, in the scenarios that used to lose a
cut, what re-authorizing at the JWT lifetime costs, and how many connects a second the
callout sustains.

Removal-to-refusal is timed from the removal's reply until nats-server refuses the
member's re-subscription to the room (the member's client reconnects after the cut and
re-subscribes; from then on nothing of the room reaches it). Scenarios, each over `runs`
removals with two `unibus serve` processes on one nats-server:

- plain;
- a reconnect storm: 16 tasks connecting and closing other members of the room meanwhile;
- the writer dead: one instance is killed with SIGKILL, and each removal is written to
  the room bucket as an instance writes it (as the service's user, compare-and-set) with
  nobody left to act on it but the other instance's watch; timed from the write;
- a NATS restart between the member's connect and the removal;
- a 3-node cluster, the node of one instance (and its bucket watch) killed with SIGKILL
  before each removal.

`python -m bench.revocation [--quick]` prints the rows; `make bench` includes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from unibus.callout import serverconf
from unibus.callout.keys import BoundaryKeys
from unibus.callout.revoker import Revoker
from unibus.client import Identity, Peer, Unavailable
from unibus.config import Config
from unibus.natsserver import NatsServer, ServerSpec, free_port, running
from unibus.processes import kill_process, stop_process
from unibus.storage import Room
from unibus.storage.kv import KvStore
from unibus.wire import connection
from unibus.wire.interest import confirm_interest
from unibus.wire.names import INBOXES, ROOM_BUCKET

from .boundary import wait_answering
from .measure import Latency, cpu_seconds
from .report import fmt_ms

MISSED_S = 10.0


@dataclass
class Deployment:
    """One nats-server with the boundary and `unibus serve` processes on it."""

    workdir: Path
    server: NatsServer
    keys: BoundaryKeys
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, index: int, url: str | None = None) -> subprocess.Popen[bytes]:
        """Instance `index` (again), on `url` (a cluster node's) or the server's."""
        env = {
            **os.environ,
            "UNIBUS_NATS_URL": url or self.server.url,
            "UNIBUS_KEYS_DIR": str(self.workdir / "keys"),
            "UNIBUS_DATA_DIR": str(self.workdir / f"svc{index}"),
        }
        log = (self.workdir / f"service{index}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "unibus", "serve"], env=env, stdout=log, stderr=log)
        if index < len(self.procs):
            self.procs[index] = proc
        else:
            self.procs.append(proc)
        return proc


@contextlib.contextmanager
def deployment(workdir: Path, instances: int) -> Iterator[Deployment]:
    keys = BoundaryKeys.ensure(workdir / "keys")
    spec = ServerSpec(store_dir=workdir / "nats", server_name="bench-revocation")
    spec.extra = serverconf.render(keys.public())
    server = NatsServer(spec).start()
    deployed = Deployment(workdir, server, keys)
    try:
        for i in range(instances):
            deployed.start(i)
        yield deployed
    finally:
        for proc in deployed.procs:
            stop_process(proc)
        server.stop()


async def as_identity(url: str, who: Identity, **callbacks: Any) -> Client:
    return await connection.connect_once(connection.options(url, name="bench", identity=who, **callbacks))


Disturbance = Callable[[], Awaitable[None]]


Remove = Callable[[Peer, str, str], Awaitable[None]]


async def through_the_service(peer: Peer, room: str, member: str) -> None:
    await retrying(lambda: peer.remove_member(room, member))


async def retrying(change: Callable[[], Awaitable[object]], tries: int = 40) -> None:
    """A change answered 503 changed nothing and is sent again (docs/protocol.md): right
    after a node's loss the nonce stream can be briefly without a leader."""
    for _ in range(tries - 1):
        try:
            await change()
            return
        except Unavailable:
            await asyncio.sleep(0.25)
    await change()


def written_by_a_dead_writer(service: Client) -> Remove:
    async def remove(_: Peer, room: str, member: str) -> None:
        rows = await service.jetstream().key_value(ROOM_BUCKET)
        entry = await rows.get(room)
        assert entry.value is not None
        row = Room.from_json(entry.value, entry.revision or 0)
        changed = replace(row, members={k: v for k, v in row.members.items() if k != member})
        await rows.update(room, changed.to_json(), last=entry.revision)

    return remove


async def removal_to_refusal(
    url: str,
    runs: int,
    before_removal: Disturbance | None = None,
    remove: Remove = through_the_service,
    after_run: Disturbance | None = None,
    member_url: str | None = None,
) -> tuple[Latency, int]:
    """`runs` removals of a connected member; the milliseconds from each removal's reply
    until the member's re-subscription is refused, and how many runs saw no refusal
    within MISSED_S (reported, never dropped)."""
    owner, member = Identity.generate(), Identity.generate()
    owner_nc = await as_identity(url, owner)
    peer = Peer(owner_nc, owner)
    room = (await peer.create_room(mode="ephemeral", encrypted=False)).id
    samples, missed = [], 0
    for _ in range(runs):
        refused = asyncio.Event()

        async def on_error(exc: Exception, refused: asyncio.Event = refused) -> None:
            if "permissions violation for subscription" in str(exc).lower():
                refused.set()

        await retrying(lambda: peer.add_member(room, member.public_key))
        member_nc = await as_identity(member_url or url, member, error_cb=on_error)
        await member_nc.subscribe(f"unibus.room.{room}")
        await confirm_interest(member_nc)
        if before_removal is not None:
            await before_removal()
            await _until([owner_nc, member_nc])
        await remove(peer, room, member.public_key)
        start = time.perf_counter()
        try:
            await asyncio.wait_for(refused.wait(), MISSED_S)
            samples.append((time.perf_counter() - start) * 1000)
        except TimeoutError:
            missed += 1
        await member_nc.close()
        if after_run is not None:
            await after_run()
    await owner_nc.close()
    return Latency(samples), missed


async def _until(clients: list[Client], within_s: float = 30.0) -> None:
    """Until every client is connected (again): nats-py has no event for it to await."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if all(nc.is_connected for nc in clients):
            return
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def reconnect_storm(url: str, tasks: int = 16) -> AsyncIterator[None]:
    """Identities connecting and closing as fast as they can, throughout."""
    stop = asyncio.Event()

    async def churn() -> None:
        who = Identity.generate()
        while not stop.is_set():
            with contextlib.suppress(Exception):
                nc = await as_identity(url, who)
                await nc.close()

    running = [asyncio.create_task(churn()) for _ in range(tasks)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)


async def connects_per_second(url: str, seconds: float, concurrency: int = 16) -> float:
    """New identities connected (and closed) through the callout by `concurrency` loops."""
    done = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        who = Identity.generate()
        while time.monotonic() < deadline:
            nc = await as_identity(url, who)
            await nc.close()
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done / (time.monotonic() - start)


async def pass_time(dep: Deployment, connections: int, runs: int) -> Latency:
    """One revocation pass (callout/revoker.py) over `connections` idle peer connections
    besides the deployment's own: every connection read from CONNZ page by page and
    judged against the room copy; none is stale, so the pass is all reading."""
    url = dep.server.url
    opened: list[Client] = []

    async def open_some(count: int) -> None:
        who = Identity.generate()
        for _ in range(count):
            opened.append(await as_identity(url, who))

    await asyncio.gather(*(open_some(connections // 16) for _ in range(16)))
    service = await as_role(dep, "service")
    system = await as_role(dep, "system")
    store = await KvStore.open(service.jetstream(), 1, 5.0, service)
    try:
        revoker = Revoker(system, store)
        await revoker.learn_servers()
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            await revoker.sweep()
            samples.append((time.perf_counter() - start) * 1000)
        return Latency(samples)
    finally:
        await store.close()
        for nc in [service, system, *opened]:
            await nc.close()


async def as_role(dep: Deployment, role: str) -> Client:
    user = dep.keys.users[role]
    return await connection.connect_once(
        connection.options(dep.server.url, name=f"bench-{role}", identity=user, inbox=INBOXES[role])
    )


@contextlib.contextmanager
def cluster(workdir: Path, keys: BoundaryKeys) -> Iterator[tuple[list[NatsServer], list[int]]]:
    """Three nodes with the boundary, each with a monitoring port for `/healthz`."""
    names = ["n1", "n2", "n3"]
    routes = [free_port() for _ in names]
    monitors = [free_port() for _ in names]
    nodes = [
        NatsServer(
            ServerSpec(
                store_dir=workdir / name,
                server_name=name,
                cluster_name="bench-revocation",
                cluster_port=routes[i],
                routes=[p for j, p in enumerate(routes) if j != i],
                extra=f"http: 127.0.0.1:{monitors[i]}\n{serverconf.render(keys.public())}",
            )
        )
        for i, name in enumerate(names)
    ]
    with running(nodes):
        yield nodes, monitors


async def healthy(monitor: int, within_s: float = 60.0) -> None:
    """Until the node answers `/healthz` ok: routes up, JetStream current."""

    def ok() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=1) as reply:
                return bool(reply.status == 200 and json.load(reply).get("status") == "ok")
        except (OSError, ValueError):
            return False

    deadline = time.monotonic() + within_s
    while not await asyncio.to_thread(ok):
        if time.monotonic() > deadline:
            raise TimeoutError(f"node on monitor port {monitor} not healthy")
        await asyncio.sleep(0.2)


async def node_loss(workdir: Path, runs: int) -> tuple[Latency, int]:
    """Two instances, on n1 and n2; the owner on n2, the member on n3. Before each removal
    n1, the node one instance and its bucket watch are on, is killed (SIGKILL); it comes
    back (healthy) before the next run."""
    keys = BoundaryKeys.ensure(workdir / "keys")
    with cluster(workdir / "cluster", keys) as (nodes, monitors):
        for monitor in monitors:
            await healthy(monitor)
        dep = Deployment(workdir, nodes[1], keys)
        try:
            dep.start(0, nodes[0].url)
            dep.start(1, nodes[1].url)
            await wait_instances(nodes[1].url, 2)

            async def lose_n1() -> None:
                nodes[0].kill()

            async def bring_back_n1() -> None:
                await asyncio.to_thread(nodes[0].start)
                await healthy(monitors[0])
                await wait_instances(nodes[1].url, 2)

            seeds = ",".join(node.url for node in (nodes[1], nodes[2]))
            return await removal_to_refusal(
                seeds, runs, lose_n1, after_run=bring_back_n1, member_url=nodes[2].url
            )
        finally:
            for proc in dep.procs:
                stop_process(proc)


async def wait_instances(url: str, count: int) -> None:
    """Until `count` instances answer `$SRV.INFO` with the auth callout among their
    endpoints (an instance answers discovery before its endpoints are subscribed)."""
    await wait_answering(url)
    nc = await as_identity(url, Identity.generate())
    try:
        deadline = time.monotonic() + 120  # a loaded machine starts a cluster's instances slowly
        while time.monotonic() < deadline:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish("$SRV.INFO.unibus-control-plane", b"", reply=inbox)
            ready = 0
            with contextlib.suppress(Exception):
                while True:
                    info = json.loads((await sub.next_msg(timeout=0.3)).data)
                    ready += any(e.get("name") == "auth-callout" for e in info.get("endpoints") or [])
            await sub.unsubscribe()
            if ready >= count:
                return
        raise TimeoutError(f"{count} service instances did not come up")
    finally:
        await nc.close()


def service_cpu(procs: list[subprocess.Popen[bytes]]) -> float:
    return sum(cpu_seconds(p.pid) for p in procs if p.poll() is None)


async def measure(workdir: Path, quick: bool) -> list[str]:
    runs = 10 if quick else 50
    rows = []
    with deployment(workdir / "revocation", instances=2) as dep:
        url = dep.server.url
        await wait_instances(url, 2)
        plain, plain_missed = await removal_to_refusal(url, runs)
        rows.append(row("plain", plain, plain_missed))

        async with reconnect_storm(url):
            stormy, stormy_missed = await removal_to_refusal(url, runs)
        rows.append(row("under a reconnect storm (16 tasks)", stormy, stormy_missed))

        kill_process(dep.procs[0])
        service = await connection.connect_once(
            connection.options(
                url, name="bench-writer", identity=dep.keys.users["service"], inbox=INBOXES["service"]
            )
        )
        try:
            killed, killed_missed = await removal_to_refusal(
                url, runs, remove=written_by_a_dead_writer(service)
            )
        finally:
            await service.close()
        rows.append(row("its writer dead (SIGKILL) after the write", killed, killed_missed))
        dep.start(0)
        await wait_instances(url, 2)

        async def restart_nats() -> None:
            await asyncio.to_thread(dep.server.restart)

        restarted, restarted_missed = await removal_to_refusal(url, runs, restart_nats)
        rows.append(row("right after a NATS restart", restarted, restarted_missed))

        before = service_cpu(dep.procs)
        rate = await connects_per_second(url, 3.0 if quick else 10.0)
        cpu_ms = (service_cpu(dep.procs) - before) * 1000
        seconds = 3.0 if quick else 10.0
        per_connect_ms = cpu_ms / (rate * seconds) if rate else 0.0
        idle = 200 if quick else 1000
        passes = await pass_time(dep, idle, 5 if quick else 20)
    lost, lost_missed = await node_loss(workdir / "revocation-cluster", runs)
    rows.append(row("3-node cluster, an instance's node (and its watch) killed", lost, lost_missed))
    ttl = Config().callout_ttl_s
    at_10k = 10_000 / ttl
    rows += [
        f"| connects/s through the callout, new identities, 16 concurrent loops, 2 instances |"
        f" {rate:,.0f}/s ({per_connect_ms:.2f} ms service CPU each: about"
        f" {1000 / per_connect_ms if per_connect_ms else 0:,.0f}/s per service core) | |",
        f"| a revocation pass over {idle:,} idle peer connections (none stale), p50 / max |"
        f" {fmt_ms(passes.p50)} / {fmt_ms(max(passes.samples_ms))} | |",
        f"| re-authorization at the JWT lifetime ({ttl:.0f} s): 10,000 connections |"
        f" {at_10k:.0f} callouts/s, {at_10k * per_connect_ms / 1000:.2f} service cores | |",
    ]
    return rows


def row(scenario: str, latency: Latency, missed: int) -> str:
    total = len(latency.samples_ms) + missed
    if not latency.samples_ms:
        return (
            f"| removal → refusal, {scenario}: none refused in {MISSED_S:.0f} s ({total} runs) | — | ≤ 2 s |"
        )
    return (
        f"| removal → refusal, {scenario}, p50 / p99 / max ({missed} of {total} runs missed"
        f" {MISSED_S:.0f} s) | {fmt_ms(latency.p50)} / {fmt_ms(latency.p99)} /"
        f" {fmt_ms(max(latency.samples_ms))} | ≤ 2 s |"
    )


def main() -> None:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix="unibus-bench-revocation-") as tmp:
        print("\n".join(asyncio.run(measure(Path(tmp), quick))))


if __name__ == "__main__":
    main()
