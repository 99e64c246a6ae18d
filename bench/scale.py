"""Rooms at scale: the design's one stream per room, grown on a 3-node JetStream cluster.

One cluster (three nats-server processes, routes on loopback) and one `unibus serve`; the
rooms are created in steps up to each checkpoint, and at each checkpoint:
- creation time of that step (16 concurrent callers, stream and row each; one creator
  identity per 500 rooms, within the default per-creator limit, so each create's quota
  check sees what a real creator's does), after 20 frames of 300 bytes were published into every
  new room over core NATS;
- resident memory of each nats-server node and of the serving instance;
- a fresh instance started beside it: time until it serves (it loads every row; asked
  every 0.25 s), and its resident memory;
- history(limit=20) of 200 random rooms, each read once (cold: not in the instance's
  cache) and again (warm).
Streams are R1 (`UNIBUS_REPLICAS=1`), placed across the nodes by JetStream itself; R3
would hold every room on every node, three times the memory per node (docs/operations.md).
Room streams reserve their byte limit in the store, so these are created with
`UNIBUS_ROOM_MAX_BYTES` of 1 MiB (docs/operations.md, "Storage layout").

The rows end with where the instance's memory and start time would reach a 2 GiB
container and 100,000 rooms, and what 100,000 rooms would take of creation time and
nats-server memory, extrapolated linearly from the last two checkpoints (and labelled
so). `python -m bench.scale --rooms 1000,10000,50000 --nodes 3` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.aio.client import Client

from unibus.client import ControlClient, Identity, Unavailable
from unibus.natsserver import NatsServer, ServerSpec, free_port, running

from .measure import Latency, cpu_seconds, resident_mib
from .report import fmt_ms
from .stack import PENDING, Stack

FRAMES = 20
FRAME_BYTES = 300
SAMPLE = 200
CREATORS = 16
ROOMS_PER_CREATOR = 500
"""Half the default `UNIBUS_MAX_ROOMS_PER_CREATOR` (1,000): a new creator identity every
500 rooms, so no create meets the limit (this is not a test of the quota)."""
SERVICE_ENV = {
    "UNIBUS_ROOM_MAX_BYTES": str(1024 * 1024),
    "UNIBUS_REPLICAS": "1",
}
START_WAIT_S = 300.0
GIB2_MIB = 2048


@dataclass(frozen=True)
class Checkpoint:
    rooms: int
    created_s: float
    """Creating the rooms of this step (since the previous checkpoint)."""
    create_cpu_ms: tuple[float, float]
    """CPU per room created in this step: the serving instance's, and every nats-server's
    together (what bounds the creation rate, and which side grows with the count)."""
    nodes_mib: list[float]
    service_mib: float
    start_s: float
    start_cpu_s: float
    """The fresh instance's own CPU until it serves: what its start costs whatever the
    machine's load (the wall time above waits for the CPU too)."""
    fresh_mib: float
    cold: Latency
    warm: Latency


@contextlib.contextmanager
def cluster(workdir: Path, size: int, prof_ports: list[int] | None = None) -> Iterator[list[NatsServer]]:
    """`size` nats-servers routed to each other; with `prof_ports`, each serves Go's pprof
    on its port (bench/creation.py)."""
    ports = [free_port() for _ in range(size)]
    nodes = [
        NatsServer(
            ServerSpec(
                store_dir=workdir / f"n{i + 1}",
                server_name=f"n{i + 1}",
                cluster_name="bench-scale" if size > 1 else None,
                cluster_port=ports[i] if size > 1 else 0,
                routes=[p for j, p in enumerate(ports) if j != i],
                extra=f"prof_port: {prof_ports[i]}\n" if prof_ports else "",
            )
        )
        for i in range(size)
    ]
    with running(nodes):
        yield nodes


async def jetstream_ready(nc: Client) -> None:
    """Until the cluster has a meta leader and answers JetStream requests."""
    for _ in range(300):
        with contextlib.suppress(Exception):
            await nc.jetstream().account_info()
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("JetStream never became available on the cluster")


async def grow(
    workdir: Path, checkpoints: list[int], size: int, compare: Path | None = None
) -> list[Checkpoint]:
    with cluster(workdir, size) as nodes:
        url = ",".join(node.url for node in nodes)
        st = Stack(nodes[0], workdir)
        env = {**SERVICE_ENV, "UNIBUS_NATS_URL": url}
        serving = st.start_service(**env)
        nc = await nats.connect(servers=url.split(","), pending_size=PENDING)
        await jetstream_ready(nc)
        await st.wait_services(nc, 1)
        creators = [
            ControlClient(nc, Identity.generate()) for _ in range(checkpoints[-1] // ROOMS_PER_CREATOR + 1)
        ]
        results: list[Checkpoint] = []
        made = 0
        try:
            for target in checkpoints:
                cpu_before = _cpu(serving, nodes)
                created_s = await _create(creators, range(made, target))
                cpu_after = _cpu(serving, nodes)
                create_cpu_ms = (
                    1e3 * (cpu_after[0] - cpu_before[0]) / (target - made),
                    1e3 * (cpu_after[1] - cpu_before[1]) / (target - made),
                )
                for n in range(made, target):
                    for _ in range(FRAMES):
                        await nc.publish(f"unibus.room.r{n}", os.urandom(FRAME_BYTES))
                await nc.flush()
                await _stored(creators, target - 1)
                made = target
                nodes_mib = [resident_mib(node.process.pid) for node in nodes if node.process]
                service_mib = resident_mib(serving.pid)
                started = time.perf_counter()
                fresh = st.start_service(**env)
                await st.wait_services(nc, 2, START_WAIT_S)
                start_s = time.perf_counter() - started
                start_cpu_s = cpu_seconds(fresh.pid)
                fresh_mib = resident_mib(fresh.pid)
                st.stop_service(fresh)
                if compare is not None:
                    await _compare_starts(st, nc, env, compare, target)
                sample = random.Random(target).sample(range(made), min(SAMPLE, made))
                cold = await _reads(creators, sample)
                warm = await _reads(creators, sample)
                results.append(
                    Checkpoint(
                        target,
                        created_s,
                        create_cpu_ms,
                        nodes_mib,
                        service_mib,
                        start_s,
                        start_cpu_s,
                        fresh_mib,
                        cold,
                        warm,
                    )
                )
                # A long run says how far it got (the table comes at the end).
                print(f"bench.scale: {_summary(results[-1])}", flush=True)
        finally:
            await nc.close()
            for proc in list(st.services):
                st.stop_service(proc)
        return results


async def _compare_starts(st: Stack, nc: Client, env: dict[str, str], other: Path, rooms: int) -> None:
    """Fresh starts of the service tree `other` (its `service/` put first on PYTHONPATH)
    and of this one, alternately, three times each against the same rooms: a before/after
    in the same conditions."""
    for _ in range(3):
        for name, extra in (("before", {"PYTHONPATH": str(other / "service")}), ("after", {})):
            started = time.perf_counter()
            fresh = st.start_service(**env, **extra)
            await st.wait_services(nc, 2, START_WAIT_S)
            wall, cpu, mib = time.perf_counter() - started, cpu_seconds(fresh.pid), resident_mib(fresh.pid)
            st.stop_service(fresh)
            load = os.getloadavg()[0]
            print(
                f"bench.scale: {rooms} rooms, {name}: start {wall:.2f} s, CPU {cpu:.2f} s, {mib:.0f} MiB"
                f" (load {load:.1f})",
                flush=True,
            )


def _cpu(service: subprocess.Popen[bytes], nodes: list[NatsServer]) -> tuple[float, float]:
    """CPU seconds so far: the instance's, and the nats-servers' together."""
    return cpu_seconds(service.pid), sum(cpu_seconds(node.process.pid) for node in nodes if node.process)


def _summary(p: Checkpoint) -> str:
    return (
        f"{p.rooms} rooms: step created in {p.created_s:.1f} s"
        f" ({p.create_cpu_ms[0]:.1f} + {p.create_cpu_ms[1]:.1f} ms CPU a room),"
        f" nodes {[round(m) for m in p.nodes_mib]} MiB,"
        f" service {p.service_mib:.0f} MiB, fresh start {p.start_s:.2f} s ({p.start_cpu_s:.2f} s CPU)"
        f" at {p.fresh_mib:.0f} MiB,"
        f" cold p50 {fmt_ms(p.cold.p50)}, warm p50 {fmt_ms(p.warm.p50)}"
    )


async def _create(creators: list[ControlClient], numbers: range) -> float:
    pending = iter(numbers)

    async def creator() -> None:
        for n in pending:
            for attempt in range(5):
                try:
                    await creators[n // ROOMS_PER_CREATOR].create_room(f"r{n}", encrypted=False)
                    break
                except Unavailable:  # 503 is retryable (protocol.md); a loaded cluster says it
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1.0)

    started = time.perf_counter()
    await asyncio.gather(*(creator() for _ in range(CREATORS)))
    return time.perf_counter() - started


async def _stored(creators: list[ControlClient], n: int) -> None:
    for _ in range(1000):  # bounded: capture is asynchronous, and quick
        if len((await creators[n // ROOMS_PER_CREATOR].history(f"r{n}", limit=FRAMES)).frames) == FRAMES:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"r{n} never stored {FRAMES} frames")


async def _reads(creators: list[ControlClient], numbers: list[int]) -> Latency:
    samples = []
    for n in numbers:
        started = time.perf_counter()
        page = await creators[n // ROOMS_PER_CREATOR].history(f"r{n}", limit=FRAMES)
        samples.append((time.perf_counter() - started) * 1000)
        assert len(page.frames) == FRAMES
    return Latency(samples)


def rows(points: list[Checkpoint], size: int) -> list[str]:
    head = " | ".join(f"{p.rooms:,}" for p in points)
    lines = [
        "",
        f"| rooms on a {size}-node cluster, R1 (20 frames of 300 B each) | {head} |",
        "|---|" + "---|" * len(points),
    ]

    def row(what: str, cells: list[str]) -> None:
        lines.append(f"| {what} | {' | '.join(cells)} |")

    steps = [p.rooms - q for p, q in zip(points, [0] + [p.rooms for p in points[:-1]], strict=True)]
    row(
        "creation of this step, 16 concurrent callers",
        [f"{p.created_s:.1f} s ({n / p.created_s:.0f} rooms/s)" for p, n in zip(points, steps, strict=True)],
    )
    row(
        "… CPU per room created: serving instance + nats-servers",
        [f"{p.create_cpu_ms[0]:.1f} + {p.create_cpu_ms[1]:.1f} ms" for p in points],
    )
    row(
        "nats-server resident memory per node",
        [" / ".join(f"{m:.0f}" for m in p.nodes_mib) + " MiB" for p in points],
    )
    row("serving instance resident memory", [f"{p.service_mib:.0f} MiB" for p in points])
    row("fresh instance: start until serving", [f"{p.start_s:.2f} s" for p in points])
    row("… its CPU until serving", [f"{p.start_cpu_s:.2f} s" for p in points])
    row("… its resident memory", [f"{p.fresh_mib:.0f} MiB" for p in points])
    row(
        f"history(limit=20) of {SAMPLE} random rooms, cold p50 / p99",
        [f"{fmt_ms(p.cold.p50)} / {fmt_ms(p.cold.p99)}" for p in points],
    )
    row("… warm p50 / p99", [f"{fmt_ms(p.warm.p50)} / {fmt_ms(p.warm.p99)}" for p in points])
    if len(points) >= 2:
        lines += ["", *extrapolation(points[-2], points[-1])]
    return lines


def extrapolation(a: Checkpoint, b: Checkpoint) -> list[str]:
    """Linear, from two checkpoints: an estimate, labelled as one."""
    span = b.rooms - a.rooms
    per_room_mib = (b.fresh_mib - a.fresh_mib) / span
    per_room_s = (b.start_s - a.start_s) / span
    per_room_cpu = (b.start_cpu_s - a.start_cpu_s) / span
    node_per_room = (max(b.nodes_mib) - max(a.nodes_mib)) / span
    nodes = len(b.nodes_mib)
    rest = 100_000 - b.rooms
    out = [
        f"Extrapolated linearly from {a.rooms:,} and {b.rooms:,} rooms (not measured):"
        f" a fresh instance grows {1024 * per_room_mib:.2f} KiB, {1e3 * per_room_s:.3f} ms of start"
        f" and {1e3 * per_room_cpu:.3f} ms of its CPU per room;"
        f" the fullest node grows {1024 * node_per_room:.1f} KiB per room, about"
        f" {1024 * node_per_room * nodes:.0f} KiB per stream it holds (R1: one stream in {nodes} on each);"
        f" at 100,000 rooms an instance would hold about"
        f" {b.fresh_mib + per_room_mib * rest:,.0f} MiB and start in about"
        f" {b.start_s + per_room_s * rest:.1f} s, the fullest node about"
        f" {max(b.nodes_mib) + node_per_room * rest:,.0f} MiB, and the {rest:,} rooms still to create"
        f" about {rest * b.created_s / span / 60:,.0f} min at the last step's rate"
        " (which fell as streams accumulated: a lower bound)."
    ]
    if per_room_mib > 0:
        fits = b.rooms + (GIB2_MIB - b.fresh_mib) / per_room_mib
        out.append(f"At that rate an instance stops fitting a 2 GiB container at about {fits:,.0f} rooms.")
    return out


async def measure(workdir: Path, quick: bool, size: int = 3) -> list[str]:
    checkpoints = [100, 1_000] if quick else [1_000, 10_000]
    return rows(await grow(workdir / "scale", checkpoints, size), size)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--rooms", default="1000,10000", help="checkpoints, comma-separated, ascending")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument(
        "--compare",
        type=Path,
        help="another tree's checkout (e.g. `git archive main service | tar -x -C DIR`): at each"
        " checkpoint its fresh start and this one's, alternately, three times each",
    )
    args = parser.parse_args()
    checkpoints = [int(n) for n in args.rooms.split(",")]
    with tempfile.TemporaryDirectory(prefix="unibus-scale-") as tmp:
        lines = asyncio.run(grow(Path(tmp), checkpoints, args.nodes, args.compare))
    print("\n".join(rows(lines, args.nodes)))


if __name__ == "__main__":
    main()
