"""What the trust boundary costs and how fast it cuts: connect time through the auth
callout (against a static nkey user and an open server), and the delay from a member's
removal reply to the server refusing that member, across two instances and a NATS
restart. The reconnect storm is bench/storm.py's.

`python -m bench.boundary` prints its rows; `make bench` includes them in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors

from unibus.callout import serverconf
from unibus.callout.keys import BoundaryKeys
from unibus.client import Identity, Peer
from unibus.identity import Identity as Key
from unibus.natsserver import NatsServer, ServerSpec
from unibus.processes import stop_process
from unibus.wire import connection
from unibus.wire.interest import confirm_interest
from unibus.wire.names import INBOXES

from .measure import Latency
from .report import fmt_ms


@contextlib.contextmanager
def bounded(workdir: Path, instances: int) -> Iterator[tuple[NatsServer, BoundaryKeys]]:
    keys = BoundaryKeys.ensure(workdir / "keys")
    spec = ServerSpec(store_dir=workdir / "nats", server_name="bench-boundary")
    spec.extra = serverconf.render(keys.public())
    server = NatsServer(spec).start()
    procs = []
    try:
        for i in range(instances):
            env = {
                **os.environ,
                "UNIBUS_NATS_URL": server.url,
                "UNIBUS_KEYS_DIR": str(workdir / "keys"),
                "UNIBUS_DATA_DIR": str(workdir / f"svc{i}"),
            }
            log = (workdir / f"service{i}.log").open("ab")
            procs.append(
                subprocess.Popen([sys.executable, "-m", "unibus", "serve"], env=env, stdout=log, stderr=log)
            )
        yield server, keys
    finally:
        for proc in procs:
            stop_process(proc)
        server.stop()


async def connect_times(url: str, identity: Key | None, runs: int, inbox: str | None = None) -> Latency:
    samples = []
    for _ in range(runs):
        who = identity or Key.generate()
        start = time.perf_counter()
        nc = await connection.connect_once(connection.options(url, name="bench", identity=who, inbox=inbox))
        samples.append((time.perf_counter() - start) * 1000)
        await nc.close()
    return Latency(samples)


async def open_connect_times(workdir: Path, runs: int) -> Latency:
    server = NatsServer(ServerSpec(store_dir=workdir / "open", server_name="bench-open")).start()
    try:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            nc = await nats.connect(server.url)
            samples.append((time.perf_counter() - start) * 1000)
            await nc.close()
        return Latency(samples)
    finally:
        server.stop()


async def revocation(url: str, runs: int, restart: NatsServer | None = None) -> tuple[Latency, Latency, int]:
    """Remove a connected member; from the remove's reply, time until the server closes
    the member's connection (nothing reaches it from then on) and until it refuses the
    member's re-subscription to the room when the client comes back."""
    owner, member = Identity.generate(), Identity.generate()
    owner_nc = await connection.connect_once(connection.options(url, name="owner", identity=owner))
    peer = Peer(owner_nc, owner)
    room = (await peer.create_room(mode="ephemeral", encrypted=False)).id
    cut_ms, refused_ms, missed = [], [], 0
    for _ in range(runs):
        cut, refused = asyncio.Event(), asyncio.Event()

        async def on_error(exc: Exception, refused: asyncio.Event = refused) -> None:
            if "permissions violation for subscription" in str(exc).lower():
                refused.set()

        async def on_disconnect(cut: asyncio.Event = cut) -> None:
            cut.set()

        await peer.add_member(room, member.public_key)  # cuts nobody; the member connects after
        opts = connection.options(
            url, name="member", identity=member, error_cb=on_error, disconnected_cb=on_disconnect
        )
        member_nc = await connection.connect_once(opts)
        await member_nc.subscribe(f"unibus.room.{room}")
        await confirm_interest(member_nc)
        if restart is not None:
            await asyncio.to_thread(restart.restart)
            for _ in range(1000):  # bounded: both clients are back within seconds
                if owner_nc.is_connected and member_nc.is_connected:
                    break
                await asyncio.sleep(0.01)
            cut.clear()
        assert not refused.is_set(), "a member lost its room before the removal"
        await peer.remove_member(room, member.public_key)
        start = time.perf_counter()
        try:
            await asyncio.wait_for(cut.wait(), 10)
            cut_ms.append((time.perf_counter() - start) * 1000)
            await asyncio.wait_for(refused.wait(), 10)
            refused_ms.append((time.perf_counter() - start) * 1000)
        except TimeoutError:
            missed += 1  # reported, never hidden: a run with no refusal in 10 s
        await member_nc.close()
    await owner_nc.close()
    return Latency(cut_ms), Latency(refused_ms), missed


async def measure(workdir: Path, quick: bool) -> list[str]:
    runs = 20 if quick else 100
    with bounded(workdir / "boundary", instances=2) as (server, keys):
        await asyncio.sleep(1.0)
        await wait_answering(server.url)
        callout = await connect_times(server.url, None, runs)
        static = await connect_times(server.url, keys.users["shim"], runs, INBOXES["shim"])
        cut, refused, missed = await revocation(server.url, 5 if quick else 20)
        cut_restart, refused_restart, missed_restart = await revocation(
            server.url, 3 if quick else 8, restart=server
        )
    plain = await open_connect_times(workdir, runs)
    return [
        f"| connect, new identity through the auth callout, p50 / p99 | {fmt_ms(callout.p50)} /"
        f" {fmt_ms(callout.p99)} | |",
        f"| … a static nkey user (no callout) / an open server, p50 | {fmt_ms(static.p50)} /"
        f" {fmt_ms(plain.p50)} | |",
        f"| removed member's connection closed by nats-server after the remove's reply, 2 instances,"
        f" p50 / max ({missed} of {len(cut.samples_ms) + missed} runs missed 10 s) | {span(cut)} | ≤ 1 s |",
        f"| … its re-subscription to the room refused (client reconnected) | {span(refused)} | ≤ 1 s |",
        f"| … the same right after a NATS restart ({missed_restart} of"
        f" {len(refused_restart.samples_ms) + missed_restart} runs missed 10 s): closed / refused"
        f" | {span(cut_restart)} / {span(refused_restart)} | ≤ 1 s |",
    ]


def span(latency: Latency) -> str:
    if not latency.samples_ms:
        return "none"
    return f"{fmt_ms(latency.p50)} / {fmt_ms(max(latency.samples_ms))}"


async def wait_answering(url: str) -> None:
    """Until the callout admits a connection (the instances are up)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await connect_times(url, None, 1)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def main() -> None:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix="unibus-bench-boundary-") as tmp:
        print("\n".join(asyncio.run(measure(Path(tmp), quick))))


if __name__ == "__main__":
    main()
