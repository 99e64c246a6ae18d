"""Why a room's stream costs more to create the more streams there are: nats-server's CPU
per stream create on a 3-node cluster, per 1,000 streams, with Go CPU profiles of every
node at chosen counts (`go tool pprof` reads them; the meta leader is the busiest node).

The streams are made directly, as `create` makes them (`streams.room_stream_config`, R1,
1 MiB each), 16 at a time, without the service: this measures nats-server alone. At the end it
times the orphan sweep's listing both ways, `STREAM.LIST` (every stream's info, as it was)
and `STREAM.NAMES` (names only, as it is). Run alone, on a quiet machine:
`python -m bench.creation --streams 10000 --profile-at 3000,9000 --out /tmp/creation`.
bench/analysis.md ("Creation, and why not 100,000 rooms here") reads one such run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import nats
from nats.aio.client import Client

from unibus.natsserver import NatsServer, free_port
from unibus.storage import Room
from unibus.streams import StreamPolicy, largest_frame, room_stream_config

from .measure import cpu_seconds, resident_mib
from .scale import cluster, jetstream_ready

CONCURRENCY = 16
ROOM_BYTES = 1024 * 1024
POLICY = StreamPolicy(1, ROOM_BYTES, largest_frame(ROOM_BYTES))


def _node_cpu(nodes: list[NatsServer]) -> list[float]:
    return [cpu_seconds(node.process.pid) if node.process else 0.0 for node in nodes]


def _profile(port: int, seconds: int, into: Path) -> None:
    url = f"http://127.0.0.1:{port}/debug/pprof/profile?seconds={seconds}"
    with urllib.request.urlopen(url, timeout=seconds + 30) as answer:
        into.write_bytes(answer.read())


async def _listing(nc: Client, api: str, runs: int = 5) -> str:
    """Median time and bytes to page through `api` filtered to room subjects, as the
    orphan sweep did (`STREAM.LIST`) and does (`STREAM.NAMES`)."""
    times, size = [], 0
    for _ in range(runs):
        began, got, size = time.perf_counter(), 0, 0
        while True:
            body = json.dumps({"offset": got, "subject": "unibus.room.*"}).encode()
            reply = await nc.request(f"$JS.API.{api}", body, timeout=60)
            page = json.loads(reply.data)
            size += len(reply.data)
            got += len(page.get("streams") or [])
            if not page.get("streams") or got >= page["total"]:
                break
        times.append(time.perf_counter() - began)
    return f"{statistics.median(times) * 1000:.0f} ms median of {runs}, {size / 1e6:.1f} MB of replies"


async def run(streams: int, profile_at: list[int], seconds: int, out: Path) -> None:
    """Create the streams, printing each 1,000's rate and CPU; profiles go to `out`."""
    prof_ports = [free_port() for _ in range(3)]
    with (
        tempfile.TemporaryDirectory(prefix="bench-creation-") as tmp,
        cluster(Path(tmp), 3, prof_ports) as nodes,
    ):
        nc = await nats.connect(servers=[node.url for node in nodes])
        js = nc.jetstream(timeout=60)
        await jetstream_ready(nc)
        numbers = iter(range(streams))
        made, profiles = 0, []
        step_at, step_cpu = time.perf_counter(), _node_cpu(nodes)

        async def creator() -> None:
            nonlocal made, step_at, step_cpu
            for n in numbers:
                room = Room(id=f"c{n}", mode="matrix", subject=f"unibus.room.c{n}", owner=None, members={})
                await js.add_stream(room_stream_config(room, POLICY))
                made += 1
                if made in profile_at:
                    for i, port in enumerate(prof_ports):
                        into = out / f"n{i + 1}_at_{made}.pprof"
                        profiles.append(asyncio.create_task(asyncio.to_thread(_profile, port, seconds, into)))
                if made % 1000 == 0:
                    now, cpu = time.perf_counter(), _node_cpu(nodes)
                    # CPU seconds per 1,000 creates: milliseconds per create.
                    per_node = [b - a for a, b in zip(step_cpu, cpu, strict=True)]
                    print(
                        f"{made - 1000}-{made} streams: {1000 / (now - step_at):.0f}/s,"
                        f" nats-server CPU a create {sum(per_node):.1f} ms"
                        f" (n1 {per_node[0]:.1f}, n2 {per_node[1]:.1f}, n3 {per_node[2]:.1f})",
                        flush=True,
                    )
                    step_at, step_cpu = now, cpu

        await asyncio.gather(*(creator() for _ in range(CONCURRENCY)))
        await asyncio.gather(*profiles)
        for api in ("STREAM.LIST", "STREAM.NAMES"):
            print(f"{api} of the {streams} room streams: {await _listing(nc, api)}", flush=True)
        print(
            "resident MiB at the end: "
            + ", ".join(
                f"n{i + 1} {resident_mib(node.process.pid):.0f}"
                for i, node in enumerate(nodes)
                if node.process
            )
        )
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument(
        "--profile-at", default="3000,9000", help="stream counts to profile at, comma-separated"
    )
    parser.add_argument("--seconds", type=int, default=20, help="length of each CPU profile")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-creation"))
    args = parser.parse_args()
    at = [int(n) for n in args.profile_at.split(",") if n]
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args.streams, at, args.seconds, args.out))
    for path in sorted(args.out.glob("*.pprof")):
        top = subprocess.run(
            ["go", "tool", "pprof", "-top", "-cum", "-nodecount=15", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"\n== {path.name}\n{top.stdout or top.stderr}")


if __name__ == "__main__":
    main()
