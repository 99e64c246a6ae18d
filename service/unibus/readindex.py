"""`STREAM.INFO` shared by concurrent readers, as fresh as one per read.

Every membership decision asks the room bucket's stream how far it has got (the watch
must have delivered that far, storage/kv.py), and every history read asks its room's
stream for its state (history/state.py). Asked once per read, those requests are most of
what a warm read costs. Raft's read-index batching answers the same problem: a read
needs *a* state observed after it arrived, not one of its own. So per stream at most one
request is in flight; readers that arrive while it flies wait for the next one, which
goes out as soon as it returns and serves all of them. Every reader is answered from a
request sent after it arrived, exactly as fresh as a request of its own; under load the
number of requests is bounded by round trips, not by reads, and a lone reader still
costs one round trip.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client

from .wire import jsapi


class ReadIndex:
    def __init__(self, nc: Client, timeout_s: float) -> None:
        self._nc = nc
        self._timeout = timeout_s
        self._waiting: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        """Per API call (`STREAM.INFO.<name>`), the readers for the next request (not sent yet)."""
        self._flying: set[str] = set()
        self._rounds: set[asyncio.Task[None]] = set()

    def ask(self, stream: str) -> asyncio.Future[dict[str, Any]]:
        """`$JS.API.STREAM.INFO.<stream>`'s answer as JSON (JetStream's error raised as
        nats-py's `APIError`, wire/jsapi.py), from a request sent after this call. The
        future is this reader's own: cancelling it leaves the others' answer alone. The
        dict is shared: read it, never change it."""
        subject = f"STREAM.INFO.{stream}"
        reader: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        batch = self._waiting.get(subject)
        if batch is None:
            batch = self._waiting[subject] = []
            if subject not in self._flying:
                self._launch(subject)
        batch.append(reader)
        return reader

    async def stream_info(self, stream: str) -> dict[str, Any]:
        return await self.ask(stream)

    def _launch(self, subject: str) -> None:
        self._flying.add(subject)
        task = asyncio.create_task(self._round(subject), name=f"unibus-read-index {subject}")
        self._rounds.add(task)
        task.add_done_callback(self._rounds.discard)

    async def _round(self, subject: str) -> None:
        # Taken when the request goes out: whoever joined the batch until now arrived
        # before it was sent, and whoever comes later waits for the next round.
        batch = self._waiting.pop(subject)
        try:
            answer = await jsapi.request(self._nc, subject, None, self._timeout)
        except asyncio.CancelledError:  # shutting down: nobody gets an answer
            self._flying.discard(subject)
            for reader in [*batch, *self._waiting.pop(subject, [])]:
                reader.cancel()
            raise
        except Exception as exc:
            for reader in batch:
                if not reader.done():
                    reader.set_exception(exc)
        else:
            for reader in batch:
                if not reader.done():  # a reader that gave up is cancelled
                    reader.set_result(answer)
        self._flying.discard(subject)
        if subject in self._waiting:
            self._launch(subject)
