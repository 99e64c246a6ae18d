"""The per-identity creation rule, in process, as the SQLite fallback keeps it (with
JetStream every instance shares the count: tests/test_admission.py): a burst, then the
window, each identity its own."""

from __future__ import annotations

import pytest

from unibus.endpoints import creations
from unibus.endpoints.creations import LocalCreations, Rule
from unibus.errors import ApiError


def test_the_rule_keeps_a_burst_and_a_window_of_at_least_a_second() -> None:
    assert (Rule(10.0).allowed, Rule(10.0).window_s) == (50, 5.0)
    assert (Rule(0.1).allowed, Rule(0.1).window_s) == (50, 500.0)
    assert (Rule(1000.0).allowed, Rule(1000.0).window_s) == (1000, 1.0)


async def test_a_burst_then_429_and_another_identity_is_not_affected(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(creations.time, "monotonic", lambda: now[0])
    limit = LocalCreations(Rule(2.0))
    for _ in range(50):
        await limit.take("UA")
    with pytest.raises(ApiError) as caught:
        await limit.take("UA")
    assert caught.value.code == 429 and "at most 50 room creations in 25 s" in caught.value.message
    await limit.take("UB")
    now[0] += 25.0  # the window has passed
    await limit.take("UA")


async def test_creators_whose_window_passed_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(creations.time, "monotonic", lambda: now[0])
    limit = LocalCreations(Rule(10.0))
    for i in range(10_001):
        await limit.take(f"U{i}")
    now[0] += 5.0
    await limit.take("fresh")
    assert len(limit._times) == 1
