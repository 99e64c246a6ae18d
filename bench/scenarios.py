"""Each scenario sets up what it needs on a running stack, measures, and returns rows."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from nats.aio.client import Client

from unibus.client import ControlClient, Forbidden, Identity
from unibus.storage.rooms import Room
from unibus.wire.names import bucket_name

from . import history_paths as paths
from .measure import Latency, cpu_seconds, latency, resident_mib
from .stack import Stack, connect

FRAME_BYTES = 300
REPO = Path(__file__).resolve().parent.parent
BACKLOG = 1000


async def seed_room(client: ControlClient, js_nc: Client, room_id: str, count: int = BACKLOG) -> str:
    """A persisted room holding `count` frames. Published over core NATS by the owner's own
    connection, as peers do (room streams send no acks), then waited for until stored
    (through `js_nc`, which may use JetStream)."""
    room = await client.create_room(room_id)
    js = js_nc.jetstream()
    for _ in range(count):
        await client.nc.publish(room["subject"], os.urandom(FRAME_BYTES))
    await client.nc.flush()
    for _ in range(3000):  # bounded: capture is asynchronous, and quick
        if (await js.stream_info(room["stream"])).state.messages >= count:
            return str(room["stream"])
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{room['stream']} never stored {count} frames")


async def set_allow_direct(nc: Client, stream: str, on: bool) -> None:
    js = nc.jetstream()
    config = (await js.stream_info(stream)).config
    config.allow_direct = on
    await js.update_stream(config)


async def history_latencies(
    client: ControlClient, nc: Client, room: str, stream: str, limits: list[int], runs: int
) -> dict[str, dict[int, Latency]]:
    """service / baseline / floor latency for each limit, on the same stream in one run."""
    out: dict[str, dict[int, Latency]] = {"service": {}, "baseline": {}, "floor": {}}
    for limit in limits:
        out["service"][limit] = await latency(partial(paths.via_service, client, room, limit), runs)
        out["floor"][limit] = await latency(partial(paths.floor, nc, stream, BACKLOG, limit), runs)
        out["baseline"][limit] = await latency(partial(paths.baseline, nc, stream, limit), max(5, runs // 10))
    return out


async def service_latencies(
    client: ControlClient, room: str, limits: list[int], runs: int
) -> dict[int, Latency]:
    """The service path alone, for each limit (the instance running decides the cache)."""
    return {n: await latency(partial(paths.via_service, client, room, n), runs) for n in limits}


@dataclass(frozen=True)
class Throughput:
    rps: float
    latency: Latency
    cpu_us_per_request: dict[str, float]
    """CPU spent per request by each process: the services, nats-server, this client."""


async def throughput(
    st: Stack, client: ControlClient, room: str, limit: int, concurrency: int, seconds: float
) -> Throughput:
    """Requests/s, latency and CPU per request of `concurrency` closed-loop callers."""
    assert st.server.process is not None
    pids = {"service": [p.pid for p in st.services], "nats-server": [st.server.process.pid]}
    before = {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}
    client_before = time.process_time()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await paths.via_service(client, room, limit)
            samples.append((time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    count = len(samples)
    cpu = {
        name: 1e6 * (sum(cpu_seconds(p) for p in group) - before[name]) / count
        for name, group in pids.items()
    }
    cpu["client"] = 1e6 * (time.process_time() - client_before) / count
    return Throughput(count / elapsed, Latency(samples), cpu)


async def interference(st: Stack, client: ControlClient, room: str, runs: int) -> tuple[Latency, Latency]:
    """history(limit=10) alone, and while another peer (its own process) always has a
    history(limit=1000) in flight."""
    assert client.identity is not None
    alone = await latency(lambda: paths.via_service(client, room, 10), runs)
    reader = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.big_reader",
        st.url,
        client.identity.seed,
        room,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert reader.stdout is not None
        await reader.stdout.readline()  # "ready"
        await asyncio.sleep(0.2)
        loaded = await latency(lambda: paths.via_service(client, room, 10), runs, warmup=0)
    finally:
        reader.kill()
        await reader.wait()
    return alone, loaded


async def revocation_delay(st: Stack, owner: Identity, runs: int) -> Latency:
    """Remove a member through the queue group (two instances); time from the removal's
    reply until a read by that member is refused, whichever instance answers it. Every
    membership decision brings the instance's room copy up to date first, so the first
    read after the reply is refused: this is that read's latency."""
    nc = await connect(st.url)
    as_owner = ControlClient(nc, owner)
    member = Identity.generate()
    as_member = ControlClient(nc, member)
    await as_owner.create_room("revoke", mode="ephemeral")
    samples = []
    for _ in range(runs):
        await as_owner.add_member("revoke", member.public_key)
        await as_member.info("revoke")
        await as_owner.remove_member("revoke", member.public_key)
        start = time.perf_counter()
        while True:
            try:
                await as_member.info("revoke")
            except Forbidden:
                break
        samples.append((time.perf_counter() - start) * 1000)
    await nc.close()
    return Latency(samples)


async def creation_rate(client: ControlClient, count: int, concurrency: int) -> float:
    ids = iter(range(count))

    async def creator() -> None:
        for i in ids:
            await client.create_room(f"created-{i}")

    start = time.perf_counter()
    await asyncio.gather(*(creator() for _ in range(concurrency)))
    return count / (time.perf_counter() - start)


async def resident_memory(st: Stack, rooms: int, members: int) -> float:
    """MiB resident in a fresh instance that has loaded `rooms` rows of `members` each."""
    nc = await connect(st.url)
    kv = await nc.jetstream().create_key_value(bucket=bucket_name("$UNIBUS.MEM"), history=1)
    people = [Identity.generate().public_key for _ in range(members)]
    for start in range(0, rooms, 500):
        rows = [
            Room(
                id=f"mem-{i}",
                mode="ephemeral",
                subject=f"unibus.room.mem-{i}",
                owner=people[0],
                members={p: ("owner" if p == people[0] else "member") for p in people},
                created_at_ms=int(time.time() * 1000),
            )
            for i in range(start, min(rooms, start + 500))
        ]
        await asyncio.gather(*(kv.put(r.id, r.to_json()) for r in rows))
    proc = st.start_service(UNIBUS_API_PREFIX="$UNIBUS.MEM", UNIBUS_QUEUE_GROUP="mem")
    await st.wait_services(nc, len(st.services))
    ping = ControlClient(nc, Identity.generate(), prefix="$UNIBUS.MEM")
    await ping.list_rooms()  # the instance is serving from its loaded copy
    await nc.close()
    rss = resident_mib(proc.pid)
    st.stop_service(proc)
    return rss


def bench_client_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
