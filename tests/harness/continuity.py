"""The continuity scenario every room follower this project ships must survive (the Go
example peer's `-follow`, the browser module's `follow`): a publisher sends frames while
the follower's connection is cut again and again, its user JWT expires every few seconds,
NATS restarts and the follower itself restarts from its cursor; afterwards the follower
must have delivered every stored frame exactly once, in stream order.

The stage is a real nats-server under the trust boundary (with a websocket for browsers
and the suite's inspector user), and the control plane issuing short-lived JWTs. The
publisher is the inspector with JetStream publishes and a message id, so that each frame
is stored exactly once even when an ack is lost to the restart: "sent" is then exactly
"stored". Some frames carry a forged `Nats-Sequence` far ahead, as a hostile member could
put on its own frame, which a follower must not believe.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats.errors
from nats.aio.client import Client
from nats.js.errors import Error as JetStreamError

from unibus.callout.cutoff import ConnectionCutter
from unibus.callout.keys import BoundaryKeys
from unibus.client import ControlClient, Identity
from unibus.config import AuthMode, Config
from unibus.natsserver import NatsServer
from unibus.runner import Running, running

from harness.boundary import as_role, bounded_spec, connect_inspector

JWT_TTL_S = 3.0
"""Short enough that a run of some seconds sees several expiries of the follower's JWT."""
FORGED_SEQUENCE = "1000000"


@dataclass
class Stage:
    server: NatsServer
    plane: Running
    inspector: Client
    cutter: ConnectionCutter
    room: str
    subject: str
    owner: ControlClient
    reader: Identity
    """A member of the room (not its owner): the follower's identity."""

    async def kick(self) -> int:
        """Closes every connection of the reader, as the control plane cuts one."""
        return await self.cutter.cut([self.reader.public_key])

    async def restart_nats(self) -> None:
        await asyncio.to_thread(self.server.restart)

    async def stored(self) -> list[tuple[int, bytes]]:
        """Every frame the room's stream holds, with its sequence, oldest first."""
        js = self.inspector.jetstream()
        state = (await js.stream_info(f"UNIBUS_{self.room}")).state
        frames = []
        for seq in range(state.first_seq, state.last_seq + 1):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                frames.append((seq, (await js.get_msg(f"UNIBUS_{self.room}", seq)).data or b""))
        return frames


@contextlib.asynccontextmanager
async def stage(root: Path, room: str = "followed") -> AsyncIterator[Stage]:
    keys = BoundaryKeys.ensure(root / "keys")
    inspector_identity = Identity.generate()
    server = NatsServer(bounded_spec(root / "nats", keys, inspector_identity, websocket_port=0)).start()
    try:
        config = Config(
            nats_url=server.url,
            data_dir=str(root / "data"),
            keys_dir=str(root / "keys"),
            auth_mode=AuthMode.ENFORCE,
            callout_ttl_s=JWT_TTL_S,
        )
        async with running(config) as plane, as_role(server.url, keys, "system") as system:
            inspector = await connect_inspector(server.url, inspector_identity)
            try:
                owner = ControlClient(inspector, Identity.generate())
                reader = Identity.generate()
                created = await owner.create_room(room, mode="matrix")
                await owner.add_member(room, reader.public_key)
                cutter = ConnectionCutter(system.nc, recut_s=0)
                yield Stage(server, plane, inspector, cutter, room, created["subject"], owner, reader)
            finally:
                await inspector.close()
    finally:
        server.stop()


async def publish(stage: Stage, count: int, interval_s: float, forged_every: int = 7) -> list[bytes]:
    """`count` frames, one every `interval_s`, each stored exactly once; every
    `forged_every`-th carries a forged sequence header. What was sent, in order."""
    js = stage.inspector.jetstream()
    sent = []
    for number in range(1, count + 1):
        frame = f"frame {number}".encode()
        headers = {"Nats-Msg-Id": f"continuity-{number}"}
        if number % forged_every == 0:
            headers |= {"Nats-Sequence": FORGED_SEQUENCE, "Nats-Last-Sequence": FORGED_SEQUENCE}
        while True:
            try:
                await js.publish(stage.subject, frame, timeout=1.0, headers=headers)
                break
            except (nats.errors.Error, JetStreamError):
                await asyncio.sleep(0.1)  # NATS is restarting: the message id makes a retry safe
        sent.append(frame)
        await asyncio.sleep(interval_s)
    return sent


async def run(
    stage: Stage,
    restart_follower: Callable[[], Awaitable[None]],
    count: int = 150,
    interval_s: float = 0.08,
) -> list[bytes]:
    """The scenario: publish `count` frames while the reader is kicked every 1.5 s, NATS
    restarts at a third of the run and the follower at two thirds. The frames sent."""
    publishing = asyncio.create_task(publish(stage, count, interval_s))
    run_s = count * interval_s
    loop = asyncio.get_running_loop()
    start = loop.time()
    restarted_nats = restarted_follower = False
    while not publishing.done():
        await asyncio.sleep(1.5)
        elapsed = loop.time() - start
        if not restarted_nats and elapsed > run_s / 3:
            restarted_nats = True
            await stage.restart_nats()
        elif not restarted_follower and elapsed > 2 * run_s / 3:
            restarted_follower = True
            await restart_follower()
        else:
            with contextlib.suppress(Exception):  # NATS may still be on its way back
                await stage.kick()
    assert restarted_nats and restarted_follower, "the run ended before its disruptions"
    return await publishing


async def wait_for(condition: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within_s}s: {what}")
        await asyncio.sleep(0.1)
