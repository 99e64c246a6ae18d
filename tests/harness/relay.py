"""A TCP relay in front of nats-server that can hold back what the server sends to one
named connection: a real slow link (the bytes arrive late, as over a congested network),
for tests that need one request to stay in flight while others run.

The relay learns each connection's name from the client's CONNECT, so a test holds the
control plane's `…-service` connection (JetStream replies, the bucket watch) while its
callout and responder connections flow freely.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator


class Relay:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._held: dict[str, asyncio.Event] = {}
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def hold(self, name: str) -> None:
        """From now on, what the server sends to connections named `name` waits."""
        self._held.setdefault(name, asyncio.Event()).clear()

    def release(self, name: str) -> None:
        self._held.setdefault(name, asyncio.Event()).set()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        named: list[str] = []
        up = asyncio.create_task(self._pump(client_r, server_w, learn=named))
        down = asyncio.create_task(self._pump(server_r, client_w, gate_of=named))
        self._pumps |= {up, down}
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
            self._pumps.discard(task)
        for writer in (client_w, server_w):
            writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        learn: list[str] | None = None,
        gate_of: list[str] | None = None,
    ) -> None:
        while chunk := await reader.read(65536):
            if learn is not None and not learn and b"CONNECT " in chunk:
                learn.append(_name_in(chunk))
            if gate_of:
                gate = self._held.get(gate_of[0])
                if gate is not None:
                    await gate.wait()
            writer.write(chunk)
            await writer.drain()


def _name_in(chunk: bytes) -> str:
    """The `name` of the CONNECT in `chunk` (clients send it whole, in one write)."""
    line = chunk[chunk.index(b"CONNECT ") + 8 :].split(b"\r\n", 1)[0]
    try:
        return str(json.loads(line).get("name", ""))
    except ValueError:
        return ""


@contextlib.asynccontextmanager
async def relay_to(upstream_port: int) -> AsyncIterator[Relay]:
    relay = Relay(upstream_port)
    relay._server = await asyncio.start_server(relay._accept, "127.0.0.1", 0)
    relay.port = relay._server.sockets[0].getsockname()[1]
    try:
        yield relay
    finally:
        for gate in relay._held.values():
            gate.set()
        relay._server.close()
        for task in list(relay._pumps):
            task.cancel()
