"""Waiting for a condition, the one way the suite does it: poll until it holds or a
generous bound passes, then fail saying what never happened. Under a loaded machine a
test waits for what it needs, never for a fixed time (docs/testing.md)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from nats.aio.client import Client

from unibus.client import ControlClient

Condition = Callable[[], bool | Awaitable[bool]]


async def wait_until(
    condition: Condition, what: str, *, within_s: float = 10.0, every_s: float = 0.02
) -> None:
    """Until `condition()` (a function or a coroutine function) is true; AssertionError
    naming `what` if it is not within `within_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            raise AssertionError(f"never within {within_s:g}s: {what}")
        await asyncio.sleep(every_s)


async def wait_stored(nc: Client, stream: str, count: int, within_s: float = 10.0) -> None:
    """Until `stream` holds `count` messages: a core-NATS publish is stored asynchronously."""
    js = nc.jetstream()

    async def stored() -> bool:
        return (await js.stream_info(stream)).state.messages >= count

    await wait_until(stored, f"{stream} holds {count} messages", within_s=within_s)


async def wait_history(client: ControlClient, room_id: str, count: int, within_s: float = 10.0) -> None:
    """Until the room's history reaches sequence `count`, seen as a peer sees it: through
    the control plane (peers have no JetStream under the boundary)."""

    async def reached() -> bool:
        return ((await client.history(room_id, limit=1)).last_seq or 0) >= count

    await wait_until(reached, f"{room_id} reaches {count} frames", within_s=within_s)
