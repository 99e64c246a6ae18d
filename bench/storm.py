"""The reconnect storm: thousands of identities admitted through the auth callout at once,
then all of them again after a NATS restart, with one and with two service instances.

The clients are one Go process (bench/go/storm, `stormgo`): a Python client process
tops out below the callout's own rate, so it would measure itself. Each client is its own
nkey identity and paces its retries as the Go example peer does; nats-server gives a
callout its authorization timeout, after which the client retries. Reported per storm:
seconds until every client is in (and the median client), failed attempts on the way,
clients that gave up, and the service's CPU per admitted connect (from /proc, so a loaded
machine changes the rate but not the cost).

`python -m bench.storm [--quick] [--clients N] [--instances 1,2]` prints its rows; `make
bench` includes them in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unibus.identity import Identity

from . import gofloor
from .measure import cpu_seconds
from .stack import Stack, stack

SOURCES = [gofloor.REPO / "bench" / "go" / "storm" / "main.go"]
DEADLINE_S = 25
"""A client not admitted by then gives up (reported): a storm that collapses ends the run
in bounded time."""
CAPACITY_CLIENTS = 1000
"""A storm one instance answers within nats-server's authorization timeout on a 2-core
machine: its rate is the rate one instance sustains."""


@dataclass
class Phase:
    """One storm as stormgo printed it (seconds from the storm's start)."""

    clients: int
    admitted: int
    gave_up: int
    seconds: float
    p50: float
    retries: int
    refused: int
    timed_out: int
    cpu_ms: dict[str, float]
    """CPU over the phase per client admitted: the service instances, nats-server and
    the clients (what bounds the rate on a machine they share)."""
    after_ready: float | None = None
    """Restart: seconds from nats-server listening again until the last client was in."""

    def row(self) -> str:
        if not self.admitted:
            return f"none admitted within {DEADLINE_S} s ({self.retries:,} retries)"
        rate = self.admitted / self.seconds if self.seconds else 0.0
        detail = f"{self.retries:,} retries"
        if self.refused or self.timed_out:
            detail += f": {self.refused:,} refused, {self.timed_out:,} timed out"
        gave_up = f", **{self.gave_up:,} gave up**" if self.gave_up else ""
        ready = f"; {self.after_ready:.1f} s after NATS was back" if self.after_ready is not None else ""
        return (
            f"{self.seconds:.1f} s{ready} (median client {self.p50:.1f} s, {rate:,.0f} connects/s,"
            f" {detail}{gave_up};"
            f" CPU per connect: service {self.cpu_ms['service']:.2f} ms, nats-server"
            f" {self.cpu_ms['nats-server']:.2f} ms, clients {self.cpu_ms['clients']:.2f} ms)"
        )


async def start_clients(st: Stack, binary: Path, clients: int, mode: str) -> asyncio.subprocess.Process:
    """The Go storm client: `clients` connections, `-open` (no auth) or `-restart` (through
    the callout, then again after a NATS restart), each phase cut off at DEADLINE_S."""
    return await asyncio.create_subprocess_exec(
        str(binary),
        *("-url", st.url, "-clients", str(clients), mode, "-deadline", f"{DEADLINE_S}s"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=1 << 20,
    )


async def floor(st: Stack, binary: Path, clients: int) -> Phase:
    """`clients` connecting at once to a server without auth: what the server and the
    clients cost on this machine with no callout at all."""
    proc = await start_clients(st, binary, clients, "-open")
    try:
        before = cpu(st, proc.pid)
        return phase(await read_phase(proc), cpu(st, proc.pid), before)
    finally:
        await proc.wait()


async def storm(st: Stack, binary: Path, clients: int) -> tuple[Phase, Phase]:
    """`clients` new identities connect at once; then nats-server restarts under them."""
    proc = await start_clients(st, binary, clients, "-restart")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        before = cpu(st, proc.pid)
        connect = await read_phase(proc)
        connected = phase(connect, cpu(st, proc.pid), before)
        # The service processes live on across the restart; their CPU is counted from
        # the moment the clients start losing their connections (nats-server's anew).
        before = {**cpu(st, proc.pid), "nats-server": 0.0}
        await asyncio.to_thread(st.server.restart)
        ready_ns = time.time_ns()
        reconnect = await read_phase(proc)
        restarted = phase(reconnect, cpu(st, proc.pid), before)
        if restarted.admitted:
            restarted.after_ready = (int(reconnect["last_unix_ns"]) - ready_ns) / 1e9
        return connected, restarted
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def read_phase(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE_S + 30)
    if not line:
        raise RuntimeError(f"stormgo: {(await proc.stderr.read()).decode().strip()}")
    result: dict[str, Any] = json.loads(line)
    return result


def phase(printed: dict[str, Any], after: dict[str, float], before: dict[str, float]) -> Phase:
    admitted = int(printed["admitted"])
    return Phase(
        clients=int(printed["clients"]),
        admitted=admitted,
        gave_up=int(printed["gave_up"]),
        seconds=float(printed["seconds"]),
        p50=float(printed["p50"]),
        retries=int(printed["retries"]),
        refused=int(printed["refused"]),
        timed_out=int(printed["timed_out"]),
        cpu_ms={name: 1000 * (after[name] - before[name]) / max(admitted, 1) for name in after},
    )


def cpu(st: Stack, clients: int) -> dict[str, float]:
    """CPU seconds so far of the service instances, nats-server and the client process."""
    server = st.server.process
    assert server is not None
    return {
        "service": sum(cpu_seconds(proc.pid) for proc in st.services),
        "nats-server": cpu_seconds(server.pid),
        "clients": cpu_seconds(clients),
    }


async def measure(
    workdir: Path, quick: bool, clients: int | None = None, instances: tuple[int, ...] = (1, 2)
) -> list[str]:
    """The open server's floor, a storm one instance answers within nats-server's timeout
    (its rate; not when quick), then the target's: `clients` (5,000; 500 quick) with each
    count of `instances`."""
    binary = gofloor.build(workdir, "stormgo", SOURCES)
    clients = clients or (500 if quick else 5000)
    if binary is None:
        return [f"| {clients:,}-client reconnect storm | not measured: no Go toolchain | ≤ 5 s with two |"]
    with stack(workdir / "storm-open") as st:
        opened = await floor(st, binary, clients)
    rows = [
        f"| {clients:,} clients connecting at once to an open server (no auth, no callout: the"
        f" floor on this machine) | {opened.row()} | |"
    ]
    capacity = [] if quick else [(1, CAPACITY_CLIENTS)]
    for count, size in (*capacity, *((n, clients) for n in instances)):
        with stack(workdir / f"storm{count}-{size}", boundary=True) as st:
            for _ in range(count):
                st.start_service()
            nc = await st.peer(Identity.generate())
            await st.wait_services(nc, count)
            await nc.close()
            connected, restarted = await storm(st, binary, size)
        plural = "instance" if count == 1 else "instances"
        target = "≤ 5 s (5,000 clients)" if count == 2 and size == clients else ""
        rows += [
            f"| {size:,} new identities connecting at once until all admitted (Go clients on the same"
            f" machine), {count} {plural} | {connected.row()} | |",
            f"| … the same {size:,} reconnecting after a NATS restart, from their connections' loss"
            f" until all re-authorized, {count} {plural} | {restarted.row()} | {target} |",
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 clients instead of 5,000")
    parser.add_argument("--clients", type=int, help="clients per storm (overrides --quick)")
    parser.add_argument("--instances", default="1,2", help="service instances per storm, comma-separated")
    args = parser.parse_args()
    instances = tuple(int(n) for n in args.instances.split(","))
    with tempfile.TemporaryDirectory(prefix="unibus-bench-storm-") as tmp:
        started = time.monotonic()
        rows = asyncio.run(measure(Path(tmp), args.quick, args.clients, instances))
        print("\n".join(rows))
        print(f"(storm part: {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
