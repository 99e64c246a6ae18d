"""Rooms at scale: the design's one stream per room, measured at 100 and at 10,000 rooms.

Each size gets its own nats-server and `unibus serve`, and the same steps:
- create the rooms (16 concurrent callers, stream and row each);
- publish 20 frames of 300 bytes into each over core NATS;
- read nats-server's and the service's resident memory;
- start a fresh instance and time it until it serves (loading every row);
- read history(limit=20) of 200 random rooms, each once (cold: not in the instance's
  cache), then the same 200 again (warm).

Room streams reserve their byte limit in the store (docs/operations.md, "Storage
layout"), so these rooms are created with `UNIBUS_ROOM_MAX_BYTES` of 1 MiB: at the
default 256 MiB, 10,000 rooms would need a 2.5 TiB store.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from unibus.client import ControlClient, Identity

from .measure import Latency, resident_mib
from .report import fmt_ms
from .stack import Stack, connect, stack

FRAMES = 20
FRAME_BYTES = 300
SAMPLE = 200
SERVICE_ENV = {
    "UNIBUS_ROOM_MAX_BYTES": str(1024 * 1024),
    "UNIBUS_MAX_ROOMS_PER_CREATOR": "1000000",
}


async def one_size(st: Stack, rooms: int) -> dict[str, float | Latency]:
    st.start_service(**SERVICE_ENV)
    nc = await connect(st.url)
    await st.wait_services(nc, 1)
    client = ControlClient(nc, Identity.generate())
    ids = [f"r{i}" for i in range(rooms)]
    pending = iter(ids)

    async def creator() -> None:
        for room_id in pending:
            await client.create_room(room_id, encrypted=False)

    started = time.perf_counter()
    await asyncio.gather(*(creator() for _ in range(16)))
    created_s = time.perf_counter() - started
    for room_id in ids:
        for _ in range(FRAMES):
            await nc.publish(f"unibus.room.{room_id}", os.urandom(FRAME_BYTES))
    await nc.flush()
    await _stored(client, ids[-1])

    assert st.server.process is not None
    server_mib = resident_mib(st.server.process.pid)
    service_mib = resident_mib(st.services[0].pid)
    started = time.perf_counter()
    fresh = st.start_service(**SERVICE_ENV)
    await st.wait_services(nc, 2)
    start_s = time.perf_counter() - started
    fresh_mib = resident_mib(fresh.pid)
    st.stop_service(fresh)

    sample = random.Random(rooms).sample(ids, min(SAMPLE, rooms))
    cold = await _reads(client, sample)
    warm = await _reads(client, sample)
    await nc.close()
    for proc in list(st.services):
        st.stop_service(proc)
    return {
        "created_s": created_s,
        "server_mib": server_mib,
        "service_mib": service_mib,
        "fresh_mib": fresh_mib,
        "start_s": start_s,
        "cold": cold,
        "warm": warm,
    }


async def _stored(client: ControlClient, room_id: str) -> None:
    for _ in range(1000):  # bounded: capture is asynchronous, and quick
        if len((await client.history(room_id, limit=FRAMES)).frames) == FRAMES:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{room_id} never stored {FRAMES} frames")


async def _reads(client: ControlClient, rooms: list[str]) -> Latency:
    samples = []
    for room_id in rooms:
        started = time.perf_counter()
        page = await client.history(room_id, limit=FRAMES)
        samples.append((time.perf_counter() - started) * 1000)
        assert len(page.frames) == FRAMES
    return Latency(samples)


async def measure(workdir: Path, quick: bool) -> list[str]:
    sizes = (100, 1_000 if quick else 10_000)
    results = {}
    for rooms in sizes:
        with stack(workdir / f"scale-{rooms}") as st:
            results[rooms] = await one_size(st, rooms)
    small, large = (results[n] for n in sizes)
    warm_small, warm_large = small["warm"], large["warm"]
    assert isinstance(warm_small, Latency) and isinstance(warm_large, Latency)

    def row(what: str, fmt: str, key: str, target: str = "") -> str:
        return f"| {what} | {fmt.format(small[key])} | {fmt.format(large[key])} | {target} |"

    def lat(key: str) -> str:
        a, b = small[key], large[key]
        assert isinstance(a, Latency) and isinstance(b, Latency)
        return f"{fmt_ms(a.p50)} / {fmt_ms(a.p99)} | {fmt_ms(b.p50)} / {fmt_ms(b.p99)}"

    return [
        "",
        f"| rooms (20 frames of 300 B each) | {sizes[0]:,} | {sizes[1]:,} | target |",
        "|---|---|---|---|",
        row("creation, 16 concurrent callers", "{:.1f} s", "created_s"),
        row("nats-server resident memory", "{:.0f} MiB", "server_mib"),
        row("service resident memory (after creating them)", "{:.0f} MiB", "service_mib"),
        row("fresh instance: start until serving", "{:.2f} s", "start_s", "≤ 5 s"),
        row("… its resident memory", "{:.0f} MiB", "fresh_mib"),
        f"| history(limit=20) of {SAMPLE} random rooms, cold p50 / p99 | {lat('cold')} | |",
        f"| … warm p50 / p99 | {lat('warm')} | {warm_large.p50 / warm_small.p50:.2f}x of 100 rooms, ≤ 1.2x |",
    ]
