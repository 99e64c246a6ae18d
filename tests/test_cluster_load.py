"""A bounded load run at a steady rate on a three-node cluster with two instances: zero
errors, no retries, latency percentiles printed (`pytest -s`). The 60 s version is the
`soak` marker's (tests/test_soak.py)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from harness import Cluster, Spawn
from harness.mix import run_mix

pytest_plugins = ["harness.fixtures"]


@pytest.mark.timeout(120)
async def test_steady_load_has_zero_errors(cluster: Cluster, spawn: Spawn, cluster_nc: Client) -> None:
    spawn(2)
    result = await run_mix(cluster_nc, rate_per_s=50, duration_s=10)
    print(f"\nload 50/s for 10 s on 3 nodes, 2 instances: {result.summary()}")
    assert result.errors == []
