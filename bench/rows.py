"""An instance at 100,000 rooms, measured rather than extrapolated: its start time, its own
CPU and its memory against the number of rows in the room bucket
(`python -m bench.rows --rooms 10000,100000`).

What an instance holds and loads at start is the bucket's rows (the KV watch's snapshot
into its copy, storage/kv.py); it reads a room's stream only when the room is read.
Creating 100,000 streams takes hours of nats-server's meta leader (bench/creation.py),
so the rooms here are rows alone, written straight into the bucket as `create` writes
them: persisted (`matrix`) rooms whose streams do not exist yet (the lazy backfill makes
one at a room's first read), one creator per 500 rooms and one more member each, on the
3-node cluster of bench/scale.py (bucket R1). At each checkpoint a fresh `unibus serve`
is started three times: time until it serves (answers `$SRV.INFO` with every endpoint,
asked every 0.25 s), its CPU until then, and its resident memory once serving.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import nats
from nats.js.kv import KeyValue

from unibus.client import Identity
from unibus.storage import Room
from unibus.wire.names import CONTROL_PREFIX, bucket_name

from .measure import cpu_seconds, resident_mib
from .scale import GIB2_MIB, ROOMS_PER_CREATOR, SERVICE_ENV, START_WAIT_S, cluster, jetstream_ready
from .stack import PENDING, Stack

STARTS = 3
BATCH = 1000
"""Puts in flight at once while writing rows."""


async def _write_rows(kv: KeyValue, first: int, last: int, creators: list[str], members: list[str]) -> None:
    for start in range(first, last, BATCH):
        rows = []
        for n in range(start, min(start + BATCH, last)):
            owner = creators[n // ROOMS_PER_CREATOR]
            room = Room(
                id=f"r{n}",
                mode="matrix",
                subject=f"unibus.room.r{n}",
                owner=owner,
                members={owner: "owner", members[n % len(members)]: "member"},
                created_at_ms=int(time.time() * 1000),
            )
            rows.append(kv.put(room.id, room.to_json()))
        await asyncio.gather(*rows)


async def measure_part(quick: bool) -> list[str]:
    """`make bench`'s rows: 1,000 and 10,000 rows quick, 10,000 and 100,000 in full."""
    return await measure([1_000, 10_000] if quick else [10_000, 100_000])


async def measure(checkpoints: list[int]) -> list[str]:
    lines = [
        "",
        "| rows in the bucket (3-node cluster, rooms without streams: bench/rows.py)"
        " | start until serving (median of 3) | its CPU until then | resident memory |",
        "|---|---|---|---|",
    ]
    points: list[tuple[int, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-rows-") as tmp, cluster(Path(tmp), 3) as nodes:
        workdir = Path(tmp)
        url = ",".join(node.url for node in nodes)
        st = Stack(nodes[0], workdir)
        env = {**SERVICE_ENV, "UNIBUS_NATS_URL": url}
        nc = await nats.connect(servers=url.split(","), pending_size=PENDING)
        await jetstream_ready(nc)
        first = st.start_service(**env)  # makes the bucket as a deployment's first start does
        await st.wait_services(nc, 1)
        st.stop_service(first)
        kv = await nc.jetstream(timeout=30).key_value(bucket_name(CONTROL_PREFIX))
        creators = [Identity.generate().public_key for _ in range(checkpoints[-1] // ROOMS_PER_CREATOR + 1)]
        members = [Identity.generate().public_key for _ in range(1000)]
        made = 0
        try:
            for target in checkpoints:
                began = time.perf_counter()
                await _write_rows(kv, made, target, creators, members)
                made = target
                print(f"bench.rows: {target} rows written ({time.perf_counter() - began:.1f} s)", flush=True)
                walls, cpus, mibs = [], [], []
                for _ in range(STARTS):
                    started = time.perf_counter()
                    fresh = st.start_service(**env)
                    await st.wait_services(nc, 1, START_WAIT_S)
                    walls.append(time.perf_counter() - started)
                    cpus.append(cpu_seconds(fresh.pid))
                    await asyncio.sleep(2)  # what it holds once serving, not its peak while loading
                    mibs.append(resident_mib(fresh.pid))
                    st.stop_service(fresh)
                point = (target, statistics.median(walls), statistics.median(cpus), statistics.median(mibs))
                points.append(point)
                each = ", ".join(f"{w:.2f}" for w in walls)
                print(
                    f"bench.rows: {target} rows: start {point[1]:.2f} s ({each}), CPU {point[2]:.2f} s,"
                    f" {point[3]:.0f} MiB (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                lines.append(f"| {target:,} | {point[1]:.2f} s | {point[2]:.2f} s | {point[3]:.0f} MiB |")
        finally:
            await nc.close()
            for proc in list(st.services):
                st.stop_service(proc)
    if len(points) >= 2:
        (a, _, _, mib_a), (b, _, _, mib_b) = points[-2], points[-1]
        per_row_kib = (mib_b - mib_a) * 1024 / (b - a)
        fits = b + (GIB2_MIB - mib_b) * 1024 / per_row_kib if per_row_kib > 0 else float("inf")
        lines.append("")
        lines.append(
            f"Between {a:,} and {b:,} rows an instance grows {per_row_kib:.2f} KiB per row; at that rate"
            f" it reaches a 2 GiB container near {fits:,.0f} rows (extrapolated, not measured)."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", default="10000,100000", help="checkpoints, comma-separated")
    args = parser.parse_args()
    print("\n".join(asyncio.run(measure([int(n) for n in args.rooms.split(",")]))).strip())


if __name__ == "__main__":
    main()
