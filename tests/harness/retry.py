"""The retry policy a well-behaved client applies, and the one the fault tests hold the
service to: "no request lost beyond the retry policy" means every operation succeeds
within these attempts (docs/operations.md states the same policy).

Retried: 503 (the service could not reach JetStream), no reply in time, a reply lost to
a cut of the connection (`ReplyLost`: the client does not resend a change by itself, the
policy does, as for a timeout), no responders (no instance subscribed at that moment).
Every attempt is signed afresh, so a retry is never mistaken for a replay. A create that
was applied but whose reply was lost answers 409 on the retry; the retry counts as done
when the room exists with this caller as owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import nats.errors

from unibus.client import Conflict, ControlClient, ReplyLost, Unavailable

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 10
    attempt_timeout_s: float = 3.0
    first_backoff_s: float = 0.2
    max_backoff_s: float = 2.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.first_backoff_s * 2**attempt))


DEFAULT = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)
RETRYABLE = (Unavailable, ReplyLost, nats.errors.TimeoutError, nats.errors.NoRespondersError, TimeoutError)


@dataclass
class Outcome:
    attempts: int = 0


async def with_retries(
    op: Callable[[int], Awaitable[T]], policy: RetryPolicy = DEFAULT, outcome: Outcome | None = None
) -> T:
    """Run `op(attempt)` until it succeeds or the policy is exhausted (then re-raise)."""
    for attempt in range(policy.attempts):
        if outcome is not None:
            outcome.attempts = attempt + 1
        try:
            return await op(attempt)
        except RETRYABLE:
            if attempt + 1 == policy.attempts:
                raise
            await asyncio.sleep(policy.backoff(attempt))
    raise AssertionError("unreachable")


async def create_room(
    client: ControlClient, room_id: str, policy: RetryPolicy = DEFAULT, outcome: Outcome | None = None
) -> dict[str, Any]:
    async def attempt(n: int) -> dict[str, Any]:
        try:
            return await client.create_room(room_id)
        except Conflict:
            if n == 0:
                raise
            info = await client.info(room_id)  # an earlier attempt landed: ours, or a real conflict
            if info["owner"] != client.identity.public_key:  # type: ignore[union-attr]
                raise
            return info

    return await with_retries(attempt, policy, outcome)
