"""What bringing the room copy up to date before every membership decision costs a read:
history(limit=10) p50 with `KvStore.catch_up` as shipped and with it replaced by a no-op,
interleaved in one process against one open nats-server (`python -m bench.membership_cost`)."""

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import nats

from unibus.client import ControlClient, Identity
from unibus.config import Config
from unibus.natsserver import NatsServer, ServerSpec
from unibus.runner import running
from unibus.storage.kv import KvStore


async def main(tmp: str) -> None:
    server = NatsServer(ServerSpec(store_dir=Path(tmp) / "n")).start()
    try:
        async with running(Config(nats_url=server.url, data_dir=str(Path(tmp) / "d"))):
            nc = await nats.connect(server.url)
            c = ControlClient(nc, Identity.generate())
            room = await c.create_room("ab")
            for _ in range(50):
                await nc.publish(room["subject"], b"x" * 300)
            await nc.flush()
            await asyncio.sleep(0.5)
            real = KvStore.catch_up

            async def noop(self: KvStore) -> None:
                return None

            res: dict[str, list[float]] = {"catch_up": [], "no catch_up": []}
            for _round in range(10):
                for name, fn in (("catch_up", real), ("no catch_up", noop)):
                    setattr(KvStore, "catch_up", fn)  # noqa: B010 (mypy refuses assigning a method)
                    for _ in range(60):
                        t = time.perf_counter()
                        await c.history("ab", limit=10)
                        res[name].append((time.perf_counter() - t) * 1000)
            setattr(KvStore, "catch_up", real)  # noqa: B010
            for k, v in res.items():
                print(f"{k}: p50 {statistics.median(v):.3f} ms over {len(v)} reads")
            await nc.close()
    finally:
        server.stop()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as t:
        asyncio.run(main(t))
