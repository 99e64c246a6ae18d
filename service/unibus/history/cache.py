"""Recent frames of each room, kept by one instance and checked against the stream on
every read, so a read of a hot room costs the state check and the envelope, not one
JetStream delivery per frame.

A room stream only ever changes in ways its state shows. Appends raise `last_seq`.
Expiry, discard-old and purges raise `first_seq`. A message deleted inside the stream
leaves a gap, and the number of gaps is `(last_seq - first_seq + 1) - messages`.
Recreating the stream changes `created`. A stored sequence never changes its bytes. So
an entry remembers the state it was last checked against (its baseline) and covers a
range of sequences `[lo, hi]` in which it holds every stored frame; absent sequences
are gaps. On a read:
- another `created`, or a `last_seq` below `hi`: the stream was replaced; drop the entry;
- no gaps in the stream now: every cached frame at or after `first_seq` is still stored;
- gaps, with `first_seq` and the gap count as in the baseline: nothing was deleted since
  (with `first_seq` fixed, gaps only ever grow);
- gaps otherwise: something may have been deleted from under the entry; drop it.
Frames below `first_seq` are forgotten. For the newest page, frames appended since `hi`
are fetched (only those); the fetch must end on the frame the state names as the last
(its stored timestamp equals the state's `last_ts`), or the stream was replaced while it
ran and nothing fetched is used. The page is cut from the entry exactly as
`reader.read_window` cuts it, and only from the entry this read checked: another read
may have replaced it during the fetch.
Data fetched after a state is consistent with that state as its baseline, so two
ranges are merged only when their baselines are equal; otherwise the newer read's
range replaces the entry. tests/test_framecache.py checks every cached page against an
uncached read, byte for byte, through appends, deletes, purges, expiry and recreation.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field

from nats.aio.client import Client

from .query import Window
from .reader import WindowRead, read_window
from .reply import HistoryReply, PageBudget
from .state import StreamState


@dataclass(frozen=True)
class Baseline:
    created: str
    first_seq: int
    gaps: int

    @classmethod
    def of(cls, state: StreamState) -> Baseline:
        gaps = 0 if state.messages == 0 else state.last_seq - state.first_seq + 1 - state.messages
        return cls(state.created, state.first_seq, gaps)


_ENVELOPE = 128
"""What a page's envelope adds to its frames' costs in either encoding, at most: the keys,
brackets and the window's two sequences (`PageBudget.cost` counts each frame's own)."""


@dataclass
class _Entry:
    baseline: Baseline
    lo: int
    hi: int
    seqs: list[int] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    size: int = 0
    """The frames' bytes and the last page's (`last_page`)."""
    last_page: tuple[Window, PageBudget, HistoryReply, int] | None = None
    """The last page cut, with its window, its budget and the bytes counted for it: a hot
    room is read for the same window over and over, and the page (with its encoding,
    `HistoryReply.encode`) is then reused instead of cut and encoded again. Dropped whenever
    the range changes."""

    def forget_page(self) -> None:
        if self.last_page is not None:
            self.size -= self.last_page[3]
            self.last_page = None

    def forget_below(self, seq: int) -> None:
        cut = bisect.bisect_left(self.seqs, seq)
        if cut or seq > self.lo:
            self.forget_page()
        if cut:
            self.size -= sum(len(frame) for frame in self.frames[:cut])
            del self.seqs[:cut], self.frames[:cut]
        self.lo = max(self.lo, seq)
        # A purge past the end leaves nothing covered: keep the range empty, never a hole.
        self.hi = max(self.hi, self.lo - 1)

    def add(self, lo: int, hi: int, seqs: list[int], frames: list[bytes]) -> None:
        """Merge a fetched range that overlaps or touches `[self.lo, self.hi]`."""
        if hi > self.hi or lo < self.lo:
            self.forget_page()
        if hi > self.hi:
            start = bisect.bisect_right(seqs, self.hi)
            self.seqs.extend(seqs[start:])
            self.frames.extend(frames[start:])
            self.size += sum(len(frame) for frame in frames[start:])
            self.hi = hi
        if lo < self.lo:
            end = bisect.bisect_left(seqs, self.lo)
            self.seqs[:0] = seqs[:end]
            self.frames[:0] = frames[:end]
            self.size += sum(len(frame) for frame in frames[:end])
            self.lo = lo

    def page(self, win: Window, budget: PageBudget) -> HistoryReply | None:
        """The newest frames of `win` that fit `budget` (at least one), cut as read_window
        cuts them; None when the entry cannot tell (the page would reach below `lo`)."""
        last = self.last_page
        if last is not None and last[0] == win and last[1] == budget:
            return last[2]
        if win.last_seq > self.hi or win.last_seq < self.lo:
            return None
        start = bisect.bisect_left(self.seqs, win.first_seq)
        end = bisect.bisect_right(self.seqs, win.last_seq)
        held, first = 0, end
        while first > start:
            cost = budget.cost(self.frames[first - 1])
            if held + cost > budget.max_bytes and first < end:
                page = HistoryReply(
                    self.frames[first:end], Window(self.seqs[first], win.last_seq), self.seqs[first:end]
                )
                return self._remember(win, budget, page, held)
            held += cost
            first -= 1
        if win.first_seq < self.lo:
            return None  # every cached frame fits: what lies below lo decides
        page = HistoryReply(self.frames[start:end], win, self.seqs[start:end])
        return self._remember(win, budget, page, held)

    def _remember(self, win: Window, budget: PageBudget, page: HistoryReply, held: int) -> HistoryReply:
        self.forget_page()
        self.last_page = (win, budget, page, held + _ENVELOPE)
        self.size += held + _ENVELOPE
        return page


class FrameCache:
    """Per-instance, bounded in bytes across rooms (least recently read dropped first);
    `max_bytes=0` turns it off and every read goes to JetStream."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._size = 0
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        return self._size

    async def read(
        self, nc: Client, stream: str, state: StreamState, win: Window, timeout_s: float, budget: PageBudget
    ) -> HistoryReply:
        """The page of `win`: from the entry where it holds what decides the page
        (fetching only what was appended since), else read from JetStream and kept."""
        entry = self._checked(stream, state) if self.max_bytes else None
        if entry is not None and entry.lo <= win.last_seq and win.first_seq <= entry.hi + 1:
            page = None
            if win.last_seq <= entry.hi:
                page = self._page(stream, entry, win, budget)  # no await since the check: still valid
            elif win.last_seq == state.last_seq and state.last_ts:
                page = await self._with_tail(nc, stream, state, entry, win, timeout_s, budget)
            if page is not None:
                self.hits += 1
                self._entries.move_to_end(stream)
                return page
        self.misses += 1
        read = await read_window(
            nc, stream, win, timeout_s, budget, whole=state.stores_every_from(win.first_seq)
        )
        if self.max_bytes and state.created:
            self._keep(stream, Baseline.of(state), read)
        return read.page

    async def _with_tail(
        self,
        nc: Client,
        stream: str,
        state: StreamState,
        entry: _Entry,
        win: Window,
        timeout_s: float,
        budget: PageBudget,
    ) -> HistoryReply | None:
        """The newest page, fetching only the frames appended since `entry.hi`; None when
        the entry cannot decide it after all."""
        baseline = Baseline.of(state)
        tail = await read_window(nc, stream, Window(entry.hi + 1, win.last_seq), timeout_s, budget)
        if tail.last_ts != state.last_ts:
            # The stream's last frame is not the one the state named: replaced (or its
            # last frame deleted) during the fetch. Nothing fetched here is kept.
            self._drop(stream)
            return None
        self._keep(stream, baseline, tail)
        if tail.cut is not None:
            return tail.page  # the new frames alone overflow a page: the page is theirs
        # Other reads may have replaced the entry while this one awaited: page only from
        # the entry this read checked, still on the state it was checked against.
        if self._entries.get(stream) is not entry or entry.baseline != baseline:
            return None
        return self._page(stream, entry, win, budget)

    def _page(self, stream: str, entry: _Entry, win: Window, budget: PageBudget) -> HistoryReply | None:
        """`entry.page`, with the bytes of the page it keeps counted in the bound."""
        before = entry.size
        page = entry.page(win, budget)
        self._size += entry.size - before
        self._evict(stream)
        return page

    def _checked(self, stream: str, state: StreamState) -> _Entry | None:
        entry = self._entries.get(stream)
        if entry is None:
            return None
        now, was = Baseline.of(state), entry.baseline
        same_stream = now.created and now.created == was.created and state.last_seq >= entry.hi
        unchanged = now.gaps == 0 or (now.first_seq, now.gaps) == (was.first_seq, was.gaps)
        if not (same_stream and unchanged):
            self._drop(stream)
            return None
        before = entry.size
        entry.forget_below(state.first_seq)
        self._size -= before - entry.size
        entry.baseline = now
        return entry

    def _keep(self, stream: str, baseline: Baseline, read: WindowRead) -> None:
        """Add what a read fetched: every stored frame of its window from the one cut
        for the budget (or the window's start) up."""
        frames = [read.cut, *read.frames] if read.cut is not None else read.frames
        lo = read.cut[0] if read.cut is not None else read.window.first_seq
        hi = read.window.last_seq
        seqs, data = [seq for seq, _ in frames], [frame for _, frame in frames]
        entry = self._entries.get(stream)
        if entry is not None and entry.baseline == baseline and lo <= entry.hi + 1 and hi + 1 >= entry.lo:
            before = entry.size
            entry.add(lo, hi, seqs, data)
            self._size += entry.size - before
        else:
            if entry is not None and entry.hi > hi:
                return  # keep the newer range; this read was of an older page
            self._drop(stream)
            entry = _Entry(baseline, lo, hi, seqs, data, sum(map(len, data)))
            self._entries[stream] = entry
            self._size += entry.size
        self._entries.move_to_end(stream)
        self._evict(stream)

    def _evict(self, current: str) -> None:
        """Least recently read rooms first; the room just read loses its oldest frames
        only if it alone is over the bound."""
        while self._size > self.max_bytes and len(self._entries) > 1:
            stream = next(iter(self._entries))
            if stream == current:
                break
            self._drop(stream)
        entry = self._entries.get(current)
        if entry is not None and self._size > self.max_bytes:
            before = entry.size
            entry.forget_page()
            self._size -= before - entry.size
        if entry is not None and self._size > self.max_bytes:
            before, excess, cut = entry.size, self._size - self.max_bytes, 0
            while excess > 0 and cut < len(entry.seqs):
                excess -= len(entry.frames[cut])
                cut += 1
            entry.forget_below(entry.seqs[cut - 1] + 1 if cut else entry.lo)
            self._size -= before - entry.size

    def _drop(self, stream: str) -> None:
        entry = self._entries.pop(stream, None)
        if entry is not None:
            self._size -= entry.size
