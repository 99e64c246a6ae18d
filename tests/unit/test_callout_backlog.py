"""The callout backlog in process (service/unibus/callout/backlog.py): a fixed number of
workers, the newest request first, and requests that waited past their use dropped
unanswered; `put` never waits. The same behaviour against nats-server is in
tests/test_callout_connection.py."""

from __future__ import annotations

import asyncio

from unibus.callout.backlog import CalloutBacklog


class Recorder:
    def __init__(self) -> None:
        self.taken: list[int] = []
        self.answered: list[int] = []
        self.dropped: list[int] = []
        self.gate = asyncio.Event()
        self.busy = 0
        self.most_busy = 0

    async def answer(self, request: int) -> None:
        self.taken.append(request)
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        await self.gate.wait()
        self.busy -= 1
        self.answered.append(request)

    def drop(self, request: int) -> None:
        self.dropped.append(request)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_few_at_a_time_and_the_newest_first() -> None:
    seen = Recorder()
    backlog = CalloutBacklog(seen.answer, seen.drop, workers=2, max_wait_s=60)
    try:
        for request in range(6):
            backlog.put(request)  # never waits, however many arrive
        await settle()
        assert seen.most_busy == 2 and len(backlog) == 4
        seen.gate.set()
        await settle()
        assert seen.taken == [5, 4, 3, 2, 1, 0]
        assert sorted(seen.answered) == list(range(6)) and seen.dropped == []
    finally:
        await backlog.close(timeout_s=0.1)


async def test_requests_that_waited_past_their_use_are_dropped_unanswered() -> None:
    seen = Recorder()
    backlog = CalloutBacklog(seen.answer, seen.drop, workers=1, max_wait_s=0.2)
    try:
        backlog.put(0)  # taken at once; holds the only worker
        await settle()
        for request in (1, 2, 3):
            backlog.put(request)
        await asyncio.sleep(0.3)
        backlog.put(4)  # fresh
        seen.gate.set()
        await settle()
        assert seen.answered == [0, 4]
        assert sorted(seen.dropped) == [1, 2, 3]
        backlog.put(5)  # and the backlog keeps answering
        await settle()
        assert seen.answered == [0, 4, 5]
    finally:
        await backlog.close(timeout_s=0.1)


async def test_beyond_the_limit_the_oldest_are_dropped() -> None:
    seen = Recorder()
    backlog = CalloutBacklog(seen.answer, seen.drop, workers=1, max_wait_s=60, limit=3)
    try:
        for request in range(6):
            backlog.put(request)
        await settle()
        assert len(backlog) <= 3 and 1 in seen.dropped and 5 not in seen.dropped
    finally:
        await backlog.close(timeout_s=0.1)


async def test_a_failing_answer_does_not_stop_a_worker() -> None:
    answered: list[int] = []

    async def answer(request: int) -> None:
        if request == 0:
            raise RuntimeError("boom")
        answered.append(request)

    backlog: CalloutBacklog[int] = CalloutBacklog(answer, lambda _: None, workers=1, max_wait_s=60)
    try:
        backlog.put(0)
        await settle()
        backlog.put(1)
        await settle()
        assert answered == [1]
    finally:
        await backlog.close(timeout_s=0.1)


async def test_closing_lets_answers_under_way_finish_and_leaves_the_queue() -> None:
    seen = Recorder()
    backlog = CalloutBacklog(seen.answer, seen.drop, workers=1, max_wait_s=60)
    backlog.put(0)
    await settle()
    backlog.put(1)
    closing = asyncio.create_task(backlog.close(timeout_s=5))
    await settle()
    seen.gate.set()
    await closing
    assert seen.answered == [0] and seen.dropped == []
