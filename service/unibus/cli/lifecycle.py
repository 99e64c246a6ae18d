"""Long-running commands (`serve`, `shim`): run until SIGINT or SIGTERM, then stop cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


def run_until_signalled(body: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run `body(stop)`; `stop` is set by Ctrl-C or a TERM, and `body` winds down itself."""

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await body(stop)

    asyncio.run(go())
    return 0
