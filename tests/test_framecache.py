"""The frame cache never changes a page: a hypothesis state machine interleaves appends,
deletes, purges, expiry (a Go-client-style limits update), stream recreation and reads
on a real JetStream stream, and every cached read, on either of two instances' caches,
equals an uncached read of the same state byte for byte, in JSON and in msgpack."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import nats
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError, ServerError

from unibus.errors import ApiError
from unibus.history import cache as framecache
from unibus.history.cache import FrameCache
from unibus.history.query import HistoryQuery, Window, window
from unibus.history.reader import WindowRead, read_window
from unibus.history.reply import PageBudget
from unibus.history.state import Snapshot, StreamState, snapshot_of
from unibus.natsserver import NatsServer, ServerSpec
from unibus.readindex import ReadIndex

from harness.portal import Portal

pytestmark = pytest.mark.timeout(600)
NAMES = itertools.count()
BUDGETS = [PageBudget(400, binary=False), PageBudget(400, binary=True), PageBudget(1 << 20, binary=False)]


async def room_snapshot(nc: Client, stream: str) -> Snapshot | None:
    """The stream's snapshot as a history read takes it: one STREAM.INFO, read raw."""
    return await snapshot_of(ReadIndex(nc, 5).ask(stream))


@pytest.fixture(scope="module")
def portal_nc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Portal, Client]]:
    root: Path = tmp_path_factory.mktemp("framecache")
    server = NatsServer(ServerSpec(store_dir=root)).start()
    portal = Portal()
    nc = portal.run(nats.connect(server.url))
    yield portal, nc
    portal.run(nc.close())
    portal.close()
    server.stop()


async def add_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """nats-server sometimes refuses to make a file stream right after one of the same
    name was deleted ("error creating store for stream", seen on 2.15.1 under load)."""
    for _ in range(50):
        try:
            await js.add_stream(config)
            return
        except ServerError as err:
            if err.err_code != STORE_NOT_READY:
                raise
            await asyncio.sleep(0.05)
    await js.add_stream(config)


STORE_NOT_READY = 10049


def test_cached_pages_equal_uncached_ones(portal_nc: tuple[Portal, Client]) -> None:
    portal, nc = portal_nc
    js = nc.jetstream()

    class CacheAgainstStream(RuleBasedStateMachine):
        @initialize()
        def make_stream(self) -> None:
            n = next(NAMES)
            self.config = StreamConfig(name=f"FC_{n}", subjects=[f"fc.{n}"], storage=StorageType.FILE)
            portal.run(add_stream(js, self.config))
            # Two instances' caches: one roomy, one so small it evicts and trims.
            self.caches = [FrameCache(1 << 20), FrameCache(700)]
            self.written = 0

        def teardown(self) -> None:
            portal.run(js.delete_stream(self.config.name))

        @rule(count=st.integers(1, 25), size=st.integers(0, 160))
        def append(self, count: int, size: int) -> None:
            async def publish() -> None:
                for _ in range(count):
                    self.written += 1
                    frame = f"{self.written}:".encode().ljust(size, b".")
                    await js.publish(self.config.subjects[0], frame)  # type: ignore[index]

            portal.run(publish())

        @rule(pick=st.integers(0, 10**6))
        def delete(self, pick: int) -> None:
            state = portal.run(js.stream_info(self.config.name)).state
            if state.messages:
                seq = state.first_seq + pick % (state.last_seq - state.first_seq + 1)
                with contextlib.suppress(NotFoundError, BadRequestError):  # already a gap
                    portal.run(js.delete_msg(self.config.name, seq))

        @rule()
        def purge(self) -> None:
            portal.run(js.purge_stream(self.config.name))

        @rule(keep=st.integers(0, 30))
        def expire(self, keep: int) -> None:
            """The oldest dropped by a limits update, then the limits put back."""
            portal.run(js.update_stream(replace(self.config, max_msgs=keep)))
            portal.run(js.update_stream(replace(self.config, max_msgs=-1)))

        @rule()
        def recreate(self) -> None:
            portal.run(js.delete_stream(self.config.name))
            portal.run(add_stream(js, self.config))

        def check(self, limit: int, back: int | None, budget: PageBudget) -> None:
            """One read at the current state: uncached, then through each cache."""
            snapshot = portal.run(room_snapshot(nc, self.config.name))
            assert snapshot is not None
            state = snapshot.state
            before = None if back is None else max(1, state.last_seq + 1 - back)
            win = window(state, HistoryQuery(limit, before))
            if win is None:
                return
            plain = portal.run(read_window(nc, self.config.name, win, 5, budget)).page
            for cache in self.caches:
                cached = portal.run(cache.read(nc, self.config.name, state, win, 5, budget))
                assert cached.to_json() == plain.to_json()
                assert cached.to_msgpack() == plain.to_msgpack()

        @precondition(lambda self: self.written > 0)
        @rule(limit=st.integers(1, 60), back=st.none() | st.integers(0, 80), budget=st.sampled_from(BUDGETS))
        def read(self, limit: int, back: int | None, budget: PageBudget) -> None:
            self.check(limit, back, budget)

        @precondition(lambda self: self.written > 0)
        @rule(limit=st.sampled_from([10, 50]), budget=st.sampled_from(BUDGETS))
        def read_newest(self, limit: int, budget: PageBudget) -> None:
            """What most reads are: the newest page, again and again."""
            self.check(limit, None, budget)
            self.check(limit, None, budget)

        @invariant()
        def bounded(self) -> None:
            for cache in getattr(self, "caches", []):
                assert 0 <= cache.size <= cache.max_bytes

    CacheAgainstStream.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    CacheAgainstStream.TestCase().runTest()


def test_a_hot_room_is_served_from_the_cache(portal_nc: tuple[Portal, Client]) -> None:
    """The cache is used, not just harmless: repeated reads of an unchanged room hit it,
    and an append costs only the new frames."""
    portal, nc = portal_nc
    js = nc.jetstream()
    config = StreamConfig(name="FC_hot", subjects=["fc.hot"], storage=StorageType.FILE)
    portal.run(js.add_stream(config))
    cache = FrameCache(1 << 20)
    budget = BUDGETS[2]

    async def read() -> list[bytes]:
        snapshot = await room_snapshot(nc, "FC_hot")
        assert snapshot is not None
        win = window(snapshot.state, HistoryQuery(50))
        assert win is not None
        return (await cache.read(nc, "FC_hot", snapshot.state, win, 5, budget)).frames

    async def publish(frames: list[bytes]) -> None:
        for frame in frames:
            await js.publish("fc.hot", frame)

    portal.run(publish([b"%d" % i for i in range(60)]))
    assert portal.run(read()) == [b"%d" % i for i in range(10, 60)]
    assert (cache.hits, cache.misses) == (0, 1)
    for _ in range(5):
        assert portal.run(read()) == [b"%d" % i for i in range(10, 60)]
    portal.run(publish([b"new"]))
    assert portal.run(read()) == [*(b"%d" % i for i in range(11, 60)), b"new"]
    assert (cache.hits, cache.misses) == (6, 1)
    portal.run(js.delete_stream("FC_hot"))


@dataclass
class Gates:
    """Reads of a listed window wait for its event: before they fetch, or after (holding
    back what the cache does with the frames), so two reads interleave as a test says."""

    before: dict[Window, asyncio.Event] = field(default_factory=dict)
    after: dict[Window, asyncio.Event] = field(default_factory=dict)


@pytest.fixture
def gates(monkeypatch: pytest.MonkeyPatch) -> Gates:
    held = Gates()
    real = framecache.read_window

    async def gated(
        nc: Client, stream: str, win: Window, timeout_s: float, budget: PageBudget, *, whole: bool = False
    ) -> WindowRead:
        if win in held.before:
            await held.before[win].wait()
        read = await real(nc, stream, win, timeout_s, budget, whole=whole)
        if win in held.after:
            await held.after[win].wait()
        return read

    monkeypatch.setattr(framecache, "read_window", gated)
    return held


@pytest.mark.parametrize("removed", ["purged", "the last two deleted"])
async def test_a_read_that_ends_before_a_whole_window_is_refused_not_taken_for_a_gap(
    open_nats_server: NatsServer, removed: str
) -> None:
    """The state said every sequence of the window was stored. A read that finds the
    stream ending early is behind that state (in a cluster: a consumer placed on a
    replica that lags), so it fails with a 503 to be retried, never answers a page that
    says those frames are gone. Made here by removing frames between state and read;
    without the state's word the same read answers what it found."""
    nc = await nats.connect(open_nats_server.url)
    js = nc.jetstream()
    name = "WHOLE" + ("P" if removed == "purged" else "D")
    await js.add_stream(StreamConfig(name=name, subjects=[name.lower()], storage=StorageType.FILE))
    for i in range(1, 6):
        await js.publish(name.lower(), b"f%d" % i)
    snapshot = await room_snapshot(nc, name)
    assert snapshot is not None and snapshot.state.stores_every_from(3)
    if removed == "purged":
        await js.purge_stream(name)
    else:
        for seq in (4, 5):
            await js.delete_msg(name, seq)
    win, budget = Window(3, 5), BUDGETS[2]
    for forward in (False, True):
        with pytest.raises(ApiError) as refused:
            await read_window(nc, name, win, 5, budget, forward=forward, whole=True)
        assert refused.value.code == 503
        found = await read_window(nc, name, win, 5, budget, forward=forward)
        assert found.page.frames == ([] if removed == "purged" else [b"f3"])
    after = await room_snapshot(nc, name)
    assert after is not None and not after.state.stores_every_from(3)  # the retry's state tells
    await nc.close()


async def newest(nc: Client, stream: str, before: int | None = None) -> tuple[StreamState, Window]:
    snapshot = await room_snapshot(nc, stream)
    assert snapshot is not None
    win = window(snapshot.state, HistoryQuery(50, before))
    assert win is not None
    return snapshot.state, win


async def test_a_stream_replaced_during_a_tail_fetch_is_not_mixed_in(
    open_nats_server: NatsServer, gates: Gates
) -> None:
    """Found by review: cached frames of the old stream and a tail fetched from its
    replacement made a page no stream ever held."""
    nc = await nats.connect(open_nats_server.url)
    js = nc.jetstream()
    config = StreamConfig(name="R", subjects=["r"], storage=StorageType.FILE)
    await js.add_stream(config)
    for i in range(1, 6):
        await js.publish("r", b"old%d" % i)
    cache, budget = FrameCache(1 << 20), BUDGETS[2]
    await cache.read(nc, "R", *(await newest(nc, "R")), 5, budget)
    for i in range(6, 9):
        await js.publish("r", b"old%d" % i)
    gate = gates.before[Window(6, 8)] = asyncio.Event()
    reading = asyncio.ensure_future(cache.read(nc, "R", *(await newest(nc, "R")), 5, budget))
    await asyncio.sleep(0.1)
    await js.delete_stream("R")
    await add_stream(js, config)
    for i in range(1, 9):
        await js.publish("r", b"NEW%d" % i)
    gate.set()
    page = await reading
    assert page.frames in ([b"old%d" % i for i in range(1, 9)], [b"NEW%d" % i for i in range(1, 9)])
    await nc.close()


async def test_a_page_never_comes_from_an_entry_another_read_replaced(
    open_nats_server: NatsServer, gates: Gates
) -> None:
    """The review's interleaving: while one read fetches its tail, a slower read from
    before a delete keeps its frames (the deleted one among them); the page must still be
    the stream's as it is, never cut from the slower read's entry."""
    nc = await nats.connect(open_nats_server.url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="D", subjects=["d"], storage=StorageType.FILE))
    for i in range(1, 12):
        await js.publish("d", b"f%d" % i)
    cache, budget = FrameCache(1 << 20), BUDGETS[2]
    state, slow_window = await newest(nc, "D")
    slow_gate = gates.after[slow_window] = asyncio.Event()  # read f1..f11, keeps them late
    slow = asyncio.ensure_future(cache.read(nc, "D", state, slow_window, 5, budget))
    await asyncio.sleep(0.1)
    await js.delete_msg("D", 5)
    await cache.read(nc, "D", *(await newest(nc, "D", before=8)), 5, budget)  # the entry: 1..7
    await js.publish("d", b"f12")
    tail_gate = gates.after[Window(8, 12)] = asyncio.Event()
    reading = asyncio.ensure_future(cache.read(nc, "D", *(await newest(nc, "D")), 5, budget))
    await asyncio.sleep(0.1)
    slow_gate.set()
    await slow
    tail_gate.set()
    page = await reading
    assert page.frames == [b"f%d" % i for i in (1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12)]
    await nc.close()
