"""A separate process that keeps a history(limit=1000) in flight: another peer, with its own
CPU, so the interference measured is the service's and not the benchmark client's."""

from __future__ import annotations

import asyncio
import sys

from unibus.client import ControlClient, Identity
from unibus.wire import connection

from . import history_paths as paths


async def main(url: str, seed: str, room: str) -> None:
    identity = Identity.from_seed(seed)
    # As the identity itself, replies under its own inbox, as a peer connects.
    opts = connection.options(url, name="bench-big-reader", identity=identity, pending_size=256 * 1024 * 1024)
    nc = await connection.connect_once(opts)
    client = ControlClient(nc, identity)
    print("ready", flush=True)
    while True:
        await paths.via_service(client, room, 1000)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
