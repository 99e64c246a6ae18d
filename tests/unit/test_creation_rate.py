"""The per-identity creation rate, in process: a burst, then the rate, each identity its own."""

from __future__ import annotations

import pytest

from unibus.endpoints import quotas
from unibus.endpoints.quotas import CreationRate
from unibus.errors import ApiError


def test_a_burst_then_429_and_another_identity_is_not_affected(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(quotas.time, "monotonic", lambda: now[0])
    rate = CreationRate(rate=2.0)
    for _ in range(50):
        rate.take("UA")
    with pytest.raises(ApiError) as caught:
        rate.take("UA")
    assert caught.value.code == 429 and "at most 2 room creations a second" in caught.value.message
    rate.take("UB")
    now[0] += 0.5  # one token back at 2 a second
    rate.take("UA")
    with pytest.raises(ApiError):
        rate.take("UA")


def test_refilled_buckets_are_forgotten_so_memory_follows_active_creators(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monkeypatch.setattr(quotas.time, "monotonic", lambda: now[0])
    rate = CreationRate(rate=1.0)
    for i in range(10_001):
        rate.take(f"U{i}")
    assert len(rate._buckets) == 10_001
    now[0] += 1.0  # every bucket refilled
    rate.take("fresh")
    assert len(rate._buckets) == 1
