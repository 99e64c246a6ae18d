"""A bounded load run at a steady rate on a three-node cluster with two instances: zero
errors, no retries, latency percentiles printed (`pytest -s`). The 60 s version is the
`soak` marker's (tests/test_soak.py)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from unibus.client import ControlClient, Identity

from harness import NO_RETRY, Cluster, LoadResult, create_room, steady
from harness.checks import assert_rows_match_streams, publish_acked
from harness.fixtures import Spawn

pytest_plugins = ["harness.fixtures"]

READ_ROOMS = 5


async def run_mix(nc: Client, rate_per_s: float, duration_s: float) -> LoadResult:
    """Per 10 operations: 6 history reads (50 frames), 3 infos, 1 create; each request signed."""
    client = ControlClient(nc, Identity.generate(), timeout_s=5.0)
    rooms = [f"load-{i}" for i in range(READ_ROOMS)]
    for room_id in rooms:
        await create_room(client, room_id)
        await publish_acked(nc, room_id, 50, "load")

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


@pytest.mark.timeout(120)
async def test_steady_load_has_zero_errors(cluster: Cluster, spawn: Spawn, cluster_nc: Client) -> None:
    spawn(2)
    result = await run_mix(cluster_nc, rate_per_s=50, duration_s=10)
    print(f"\nload 50/s for 10 s on 3 nodes, 2 instances: {result.summary()}")
    assert result.errors == []
