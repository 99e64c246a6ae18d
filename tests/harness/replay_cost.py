"""What a cluster-wide replay guard costs: stream de-duplication vs a KV create per nonce.

Run from tests/: `../.venv/bin/python -m harness.replay_cost`. Starts its own 3-node
loopback cluster, R3, and prints per-claim latency and throughput for both, on file and
memory storage (docs/operations.md quotes a run of it).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats.js.errors as jserr
from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig

from .cluster import Cluster, connect_all

WINDOW_S = 240.0
SIGNER = "U" + "A" * 55
Claim = Callable[[str], Awaitable[bool]]


async def measure(name: str, claim: Claim, n: int = 400, concurrency: int = 20) -> None:
    latencies: list[float] = []

    async def one() -> None:
        start = time.perf_counter()
        assert await claim(secrets.token_urlsafe(16))
        latencies.append(time.perf_counter() - start)

    for _ in range(n):
        await one()
    ordered = sorted(latencies)
    begin = time.perf_counter()
    for _ in range(n // concurrency):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    rate = n / (time.perf_counter() - begin)
    p50, p99 = (ordered[int(q * (len(ordered) - 1))] * 1000 for q in (0.5, 0.99))
    print(f"{name}: sequential p50 {p50:.2f} ms, p99 {p99:.2f} ms; {concurrency} concurrent {rate:.0f}/s")


async def main() -> None:
    cluster = Cluster(Path(tempfile.mkdtemp())).start()
    try:
        nc = await connect_all(cluster.urls)
        js = nc.jetstream(timeout=5)
        for storage in (StorageType.FILE, StorageType.MEMORY):
            subject = f"nonces.{storage.value}"
            await js.add_stream(
                StreamConfig(
                    name=f"DEDUP-{storage.value}",
                    subjects=[subject],
                    retention=RetentionPolicy.LIMITS,
                    storage=storage,
                    num_replicas=3,
                    duplicate_window=WINDOW_S,
                    max_age=WINDOW_S,
                )
            )

            async def dedup(nonce: str, subject: str = subject) -> bool:
                ack = await js.publish(subject, b"", headers={"Nats-Msg-Id": f"{SIGNER}.{nonce}"})
                return not ack.duplicate

            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=f"KVNONCES_{storage.value}", history=1, ttl=WINDOW_S, storage=storage, replicas=3
                )
            )

            async def kv_create(nonce: str, kv: object = kv) -> bool:
                try:
                    await kv.create(f"{SIGNER}.{nonce}", b"")  # type: ignore[attr-defined]
                except jserr.KeyWrongLastSequenceError:
                    return False
                return True

            await measure(f"stream de-dup, R3 {storage.value}", dedup)
            await measure(f"KV create,     R3 {storage.value}", kv_create)
        await nc.close()
    finally:
        cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
