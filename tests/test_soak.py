"""The 60 s load run, behind the `soak` marker (`make soak`)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from harness import Cluster, Spawn
from harness.mix import run_mix

pytest_plugins = ["harness.fixtures"]


@pytest.mark.soak
@pytest.mark.timeout(300)
async def test_soak_sixty_seconds(cluster: Cluster, spawn: Spawn, cluster_nc: Client) -> None:
    spawn(3)
    result = await run_mix(cluster_nc, rate_per_s=100, duration_s=60)
    print(f"\nsoak 100/s for 60 s on 3 nodes, 3 instances: {result.summary()}")
    assert result.errors == []
