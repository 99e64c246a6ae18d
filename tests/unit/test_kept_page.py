"""The page a frame cache entry keeps for the next read of the same window: reused only
while the entry's range is what it was cut from, and counted in the cache's byte bound.
(tests/test_framecache.py checks every cached page against JetStream, byte for byte.)"""

from __future__ import annotations

import asyncio
import os

from unibus.history.cache import Baseline, FrameCache
from unibus.history.query import Window
from unibus.history.reader import WindowRead
from unibus.history.reply import PageBudget
from unibus.history.state import StreamState

BUDGET = PageBudget(1 << 20, binary=False)
FRAMES = [(seq, os.urandom(100)) for seq in range(1, 11)]
STATE = StreamState(1, 10, 10, "2026-12-06T00:00:00Z", 1)


def cache_holding_ten_frames(max_bytes: int = 1 << 20) -> FrameCache:
    cache = FrameCache(max_bytes)
    cache._keep("s", Baseline.of(STATE), WindowRead(FRAMES, Window(1, 10)))
    return cache


def read(cache: FrameCache, win: Window, state: StreamState = STATE) -> object:
    # Every page here is held by the entry, so nothing is fetched (no connection needed).
    return asyncio.run(cache.read(None, "s", state, win, 1.0, BUDGET))  # type: ignore[arg-type]


def test_the_same_window_is_served_as_the_page_already_encoded() -> None:
    cache = cache_holding_ten_frames()
    first = read(cache, Window(6, 10))
    again = read(cache, Window(6, 10))
    assert again is first
    assert cache.size > sum(len(frame) for _, frame in FRAMES)  # the kept page is counted


def test_a_kept_page_is_not_served_once_the_range_changed() -> None:
    cache = cache_holding_ten_frames()
    page = read(cache, Window(6, 10))
    # Frames below 8 expired: the window [6, 10] now reaches below what the entry holds,
    # so the entry cannot tell its page any more (the reader would fetch it).
    entry = cache._checked("s", StreamState(8, 10, 3, STATE.created, 1))
    assert entry is not None
    assert entry.page(Window(6, 10), BUDGET) is None
    assert cache.size == sum(len(frame) for seq, frame in FRAMES if seq >= 8)
    assert read(cache, Window(8, 10), StreamState(8, 10, 3, STATE.created, 1)) is not page


def test_a_kept_page_goes_before_any_frame_when_the_bound_is_reached() -> None:
    frames_only = sum(len(frame) for _, frame in FRAMES)
    cache = cache_holding_ten_frames(max_bytes=frames_only)
    read(cache, Window(1, 10))
    assert cache.size == frames_only  # every frame kept; the page was not
    assert read(cache, Window(1, 10)) is not None
