"""The continuity scenario every room follower this project ships must survive (the Go
example peer's `-follow`, the browser module's `follow`): a publisher sends frames while
the follower's connection is cut again and again, its user JWT expires every few seconds,
NATS restarts and the follower itself restarts from its cursor; afterwards the follower
must have delivered every stored frame exactly once, in stream order.

The stage is a real nats-server under the trust boundary (with a websocket for browsers
and the suite's inspector user), and the control plane issuing short-lived JWTs. The
publisher is the inspector (no JWT of its own to expire). Some frames carry a forged
`Nats-Sequence` far ahead, as a hostile member could put on its own frame, which a
follower must not believe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats.errors
from nats.aio.client import Client

from unibus.callout.keys import BoundaryKeys
from unibus.callout.serverconf import ACCOUNT
from unibus.client import ControlClient, Identity
from unibus.config import AuthMode, Config
from unibus.identity import notice_subject
from unibus.natsserver import NatsServer
from unibus.runner import Running, running

from harness.boundary import as_role, bounded_spec, connect_inspector

JWT_TTL_S = 3.0
"""Short enough that a run of some seconds sees several expiries of the follower's JWT."""
FORGED_SEQUENCE = "1000000"
FORGED_EVERY = 7
KICK_EVERY = 20


@dataclass
class Stage:
    server: NatsServer
    config: Config
    planes: contextlib.AsyncExitStack
    """Holds the running control plane."""
    inspector: Client
    system: Client
    """The boundary's system user: it may list and close connections."""
    room: str
    subject: str
    owner: ControlClient
    reader: Identity
    """A member of the room (not its owner): the follower's identity."""
    server_restarted: bool = False

    async def kick(self) -> int:
        """Closes every connection of the reader through the system account (CONNZ, then
        KICK), as the control plane cuts one; how many it closed. The callout names each
        connection's user after its identity (with more, once grants are named)."""
        query = json.dumps({"acc": ACCOUNT, "auth": True, "limit": 1024}).encode()
        answer = json.loads((await self.system.request("$SYS.REQ.SERVER.PING.CONNZ", query, 2)).data)
        server_id = answer["server"]["id"]
        kicked = 0
        for conn in answer["data"]["connections"] or []:
            if self.reader.public_key in (conn.get("authorized_user") or ""):
                body = json.dumps({"cid": conn["cid"]}).encode()
                reply = await self.system.request(f"$SYS.REQ.SERVER.{server_id}.KICK", body, 2)
                kicked += "error" not in json.loads(reply.data)
        return kicked

    async def notify(self, event: str, room: str) -> None:
        """A notice to the reader, as the control plane sends one."""
        notice = json.dumps({"event": event, "room": room}).encode()
        await self.inspector.publish(notice_subject(self.reader.public_key), notice)

    async def restart_nats(self) -> None:
        """Restarts nats-server; returns once the room's stream answers again."""
        await asyncio.to_thread(self.server.restart)
        self.server_restarted = True
        js = self.inspector.jetstream()
        for _ in range(300):
            with contextlib.suppress(nats.errors.Error):
                await js.stream_info(f"UNIBUS_{self.room}")
                return
            await asyncio.sleep(0.1)
        raise AssertionError("JetStream did not come back after the restart")

    async def stop_plane(self) -> None:
        """The control plane goes away: no callout answers, so every connect is refused."""
        await self.planes.aclose()

    async def start_plane(self) -> Running:
        return await self.planes.enter_async_context(running(self.config))

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
async def stage(root: Path, room: str = "followed", jwt_ttl_s: float = JWT_TTL_S) -> AsyncIterator[Stage]:
    keys = BoundaryKeys.ensure(root / "keys")
    inspector_identity = Identity.generate()
    server = NatsServer(bounded_spec(root / "nats", keys, inspector_identity, websocket_port=0)).start()
    try:
        config = Config(
            nats_url=server.url,
            data_dir=str(root / "data"),
            keys_dir=str(root / "keys"),
            auth_mode=AuthMode.ENFORCE,
            callout_ttl_s=jwt_ttl_s,
        )
        async with contextlib.AsyncExitStack() as planes, as_role(server.url, keys, "system") as system:
            await planes.enter_async_context(running(config))
            inspector = await connect_inspector(server.url, inspector_identity)
            try:
                owner = ControlClient(inspector, Identity.generate())
                reader = Identity.generate()
                subject = (await owner.create_room(room, mode="matrix"))["subject"]
                await owner.add_member(room, reader.public_key)
                yield Stage(server, config, planes, inspector, system.nc, room, subject, owner, reader)
            finally:
                await inspector.close()
    finally:
        server.stop()


async def publish(stage: Stage, count: int, interval_s: float, first: int = 1) -> list[bytes]:
    """Frames number `first`… over core NATS, as peers send them, one every `interval_s`;
    every `FORGED_EVERY`-th carries forged sequence headers. What was sent, in order."""
    sent = []
    for number in range(first, first + count):
        frame = f"frame {number}".encode()
        headers = {"Nats-Sequence": FORGED_SEQUENCE, "Nats-Last-Sequence": FORGED_SEQUENCE}
        await stage.inspector.publish(
            stage.subject, frame, headers=headers if number % FORGED_EVERY == 0 else None
        )
        sent.append(frame)
        await asyncio.sleep(interval_s)
    await stage.inspector.flush()
    return sent


async def run(
    stage: Stage,
    restart_follower: Callable[[], Awaitable[None]],
    count: int = 150,
    interval_s: float = 0.08,
) -> list[bytes]:
    """The scenario: `count` frames, while the reader is kicked every `KICK_EVERY` frames,
    its JWT expires every few seconds, NATS restarts after a third of them and the
    follower after two thirds. The frames sent, which are exactly the frames stored: the
    publisher pauses while NATS is down (a core-NATS frame sent then would be lost to
    everyone, which is not what this measures)."""
    sent: list[bytes] = []
    disruptions: list[asyncio.Task[object]] = []
    follower_restarted = False
    loop = asyncio.get_running_loop()
    started = loop.time()
    for first in range(1, count + 1, KICK_EVERY):
        if first > count // 3 and not stage.server_restarted:
            await stage.restart_nats()
        if first > 2 * count // 3 and not follower_restarted:
            follower_restarted = True
            disruptions.append(asyncio.create_task(restart_follower()))
        else:
            disruptions.append(asyncio.create_task(stage.kick()))
        sent += await publish(stage, min(KICK_EVERY, count + 1 - first), interval_s, first)
    kicked = 0
    for task in disruptions:
        with contextlib.suppress(nats.errors.Error):  # a kick can meet NATS on its way back
            result = await task
            kicked += result if isinstance(result, int) else 0
    assert stage.server_restarted and follower_restarted and len(sent) == count
    assert kicked >= 3, "the follower's connection was hardly ever cut"
    assert loop.time() - started > 3 * JWT_TTL_S, "too short a run for the JWT to expire several times"
    return sent


async def wait_for(condition: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within_s}s: {what}")
        await asyncio.sleep(0.1)
