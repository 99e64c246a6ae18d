"""The request mix of the load and soak runs, against rooms it seeds first."""

from __future__ import annotations

from nats.aio.client import Client

from unibus.client import ControlClient, Identity

from .checks import assert_rows_match_streams, publish_stored
from .load import LoadResult, steady
from .retry import NO_RETRY, create_room

READ_ROOMS = 5


async def run_mix(nc: Client, rate_per_s: float, duration_s: float) -> LoadResult:
    """Per 10 operations: 6 history reads (50 frames), 3 infos, 1 create; each request signed."""
    client = ControlClient(nc, Identity.generate(), timeout_s=5.0)
    rooms = [f"load-{i}" for i in range(READ_ROOMS)]
    for room_id in rooms:
        await create_room(client, room_id)
        await publish_stored(nc, room_id, 50, "load")

    async def op(i: int) -> object:
        kind, room_id = i % 10, rooms[i % READ_ROOMS]
        if kind < 6:
            return await client.history(room_id, limit=50)
        if kind < 9:
            return await client.info(room_id)
        return await create_room(client, f"load-new-{i}", NO_RETRY)

    result = await steady(rate_per_s, duration_s, op)
    await assert_rows_match_streams(nc)
    return result
