"""Callouts waiting to be answered: a few at a time, newest first, none past its use.

nats-server holds each connecting client for its authorization timeout (2 s by default)
waiting for the callout's answer; an answer after that reaches nobody. After a NATS
restart every client reconnects at once, far more callouts than one instance answers in
2 s. Handed to a task each as they arrive, hundreds of answers shared the event loop with
the connection reading the next requests, which then waited unread in the socket until
they were stale: every answer came too late, and each client's retry added a request (a
5,000-client storm admitted almost nobody in two minutes, bench/storm.py).

So the callout connection only queues a request (`put`, no await), which keeps reading
as fast as nats-server sends, and a fixed number of workers answer from the queue,
newest first: the newest request has the most time left, and under overload the oldest
are the ones whose clients gave up or soon will. A request that has waited longer than
`max_wait_s` is dropped unanswered, at no cost: nats-server then tells its client
"Authentication Timeout" at its own deadline, and the client retries. Dropping rather
than refusing is deliberate: a refusal costs a signature each and tells the client to
retry at once (100 ms in the Go example), which multiplies the load exactly when there
is too much of it; the server's timeout paces retries by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

WORKERS = 16
"""Callouts answered at once. Each awaits at most one shared round trip (the bucket's
freshness check) besides its CPU, so a few keep the CPU busy; many would only make each
pass of the event loop longer and the reading of new requests slower."""
MAX_WAIT_S = 1.0
"""Half of nats-server's default authorization timeout: time left for the answer, the
server's checks and the client's handshake."""
LIMIT = 10_000
"""Queued requests kept at most (the oldest go first): bounded memory whatever arrives."""


class CalloutBacklog(Generic[T]):
    def __init__(
        self,
        answer: Callable[[T], Awaitable[None]],
        dropped: Callable[[T], None],
        workers: int = WORKERS,
        max_wait_s: float = MAX_WAIT_S,
        limit: int = LIMIT,
    ) -> None:
        self._answer = answer
        self._dropped = dropped
        """Told of each request dropped unanswered (too old, or over the limit)."""
        self._max_wait = max_wait_s
        self._limit = limit
        self._queue: deque[tuple[float, T]] = deque()
        self._ready = asyncio.Event()
        self._closing = False
        self._workers = [asyncio.create_task(self._work(), name="unibus-callout") for _ in range(workers)]

    def put(self, request: T) -> None:
        """Queue `request`; never waits."""
        self._queue.append((time.monotonic(), request))
        if len(self._queue) > self._limit:
            self._dropped(self._queue.popleft()[1])
        self._ready.set()

    def __len__(self) -> int:
        return len(self._queue)

    async def _work(self) -> None:
        while not self._closing:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            arrived, request = self._queue.pop()  # the newest
            if time.monotonic() - arrived > self._max_wait:
                # The newest is too old, so is every other one: drop them all.
                self._dropped(request)
                while self._queue:
                    self._dropped(self._queue.popleft()[1])
                continue
            try:
                await self._answer(request)
            except Exception:  # a worker lives on whatever one answer did
                log.exception("auth callout: answer failed")

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking requests; the answers being worked on get up to `timeout_s` to go
        out. Whatever is queued stays unanswered (nats-server times it out)."""
        self._closing = True
        self._ready.set()
        await asyncio.wait(self._workers, timeout=timeout_s)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
