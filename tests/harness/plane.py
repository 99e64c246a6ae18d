"""Control-plane instances in the test's own process, each with its own connections, on a
nats-server a fixture started (conftest.py's `start_plane`, `start_bounded`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from unibus.config import AuthMode, Config
from unibus.natsserver import NatsServer
from unibus.runner import Running, running

StartPlane = Callable[..., Awaitable[Running]]


@contextlib.asynccontextmanager
async def plane_starter(tmp_path: Path, server: NatsServer) -> AsyncIterator[StartPlane]:
    """Starts control-plane instances (each its own connections) on `server` with the
    boundary's keys; another `nats_url` (an open server) gets none."""
    stack = contextlib.AsyncExitStack()

    async def start(**overrides: Any) -> Running:
        overrides.setdefault("nats_url", server.url)
        overrides.setdefault("data_dir", str(tmp_path / "data"))
        if overrides["nats_url"] == server.url:
            overrides.setdefault("keys_dir", str(tmp_path / "keys"))
        overrides.setdefault("auth_mode", AuthMode.ENFORCE)
        return await stack.enter_async_context(running(Config(**overrides)))

    async with stack:
        yield start
