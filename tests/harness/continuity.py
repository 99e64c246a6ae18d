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
from typing import Protocol

import nats.errors
from nats.aio.client import Client

from unibus.callout.grants import Grant
from unibus.callout.keys import BoundaryKeys
from unibus.callout.serverconf import ACCOUNT
from unibus.client import ControlClient, Identity
from unibus.config import AuthMode, Config
from unibus.identity import notice_subject
from unibus.natsserver import NatsServer
from unibus.runner import Running, running
from unibus.wire.names import stored_subject

from harness.boundary import as_role, bounded_spec, connect_inspector

JWT_TTL_S = 3.0
"""Short enough that a run of some seconds sees several expiries of the follower's JWT."""
FORGED_SEQUENCE = "1000000"
FORGED_EVERY = 7
ANOTHER_ROOM = "another-room"


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

    async def connections(self) -> list[tuple[str, int, Grant]]:
        """The reader's connections (server id, cid, and the grant the callout named each
        after) through the system account's CONNZ."""
        query = json.dumps({"acc": ACCOUNT, "auth": True, "limit": 1024}).encode()
        answer = json.loads((await self.system.request("$SYS.REQ.SERVER.PING.CONNZ", query, 2)).data)
        found = []
        for conn in answer["data"]["connections"] or []:
            grant = Grant.parse(conn.get("authorized_user") or "")
            if grant is not None and grant.identity == self.reader.public_key:
                found.append((answer["server"]["id"], conn["cid"], grant))
        return found

    async def kick(self) -> int:
        """Closes every connection of the reader through the system account (KICK), as
        the control plane cuts one; how many it closed."""
        kicked = 0
        for server_id, cid, _ in await self.connections():
            body = json.dumps({"cid": cid}).encode()
            reply = await self.system.request(f"$SYS.REQ.SERVER.{server_id}.KICK", body, 2)
            kicked += "error" not in json.loads(reply.data)
        return kicked

    async def grant_another_room(self) -> None:
        """The owner adds the reader to a second room."""
        await self.owner.create_room(ANOTHER_ROOM, mode="ephemeral")
        await self.owner.add_member(ANOTHER_ROOM, self.reader.public_key)

    async def holds_another_room(self) -> bool:
        """Whether the reader's one connection was granted the second room."""
        grants = [grant for _, _, grant in await self.connections()]
        return len(grants) == 1 and ANOTHER_ROOM in grants[0].rooms

    async def notify(self, event: str, room: str) -> None:
        """A notice to the reader, sent by the suite's inspector (nobody else but the
        control plane may publish into an inbox)."""
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

    async def holding(self, count: int) -> None:
        """Until the room's stream has stored `count` frames (storing is asynchronous)."""
        js = self.inspector.jetstream()

        async def stored() -> bool:
            return (await js.stream_info(f"UNIBUS_{self.room}")).state.messages >= count

        await wait_for(stored, 10, f"{count} frames stored")

    async def purge_before(self, seq: int, count: int) -> None:
        """Once all `count` frames sent are stored, drops those below `seq`, as the room's
        byte limit or an operator would."""
        await self.holding(count)
        await self.inspector.jetstream().purge_stream(f"UNIBUS_{self.room}", seq=seq)

    async def stored(self, count: int) -> list[tuple[int, bytes]]:
        """Once all `count` frames sent are stored, every frame the room's stream holds,
        with its sequence, oldest first."""
        await self.holding(count)
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


SMUGGLED = f"NATS/1.0\r\nNats-Sequence: {FORGED_SEQUENCE}\r\n\r\nX-After: a blank line\r\n\r\n".encode()
"""A header block with a blank line inside, as a hostile member can send it raw: nats-server
stores and republishes it as it is and appends its own `Nats-Sequence` after it, where
nats.go's header parser has stopped, so a Go follower reads only the forged value."""


async def publish(stage: Stage, count: int, interval_s: float, first: int = 1) -> list[bytes]:
    """Frames number `first`… over core NATS, as peers send them, one every `interval_s`;
    every `FORGED_EVERY`-th carries forged sequence headers, by turns well formed and
    smuggled behind a blank line (`SMUGGLED`). What was sent, in order."""
    sent = []
    for number in range(first, first + count):
        frame = f"frame {number}".encode()
        if number % (2 * FORGED_EVERY) == 0:
            await _publish_raw(stage.inspector, stage.subject, SMUGGLED, frame)
        else:
            headers = {"Nats-Sequence": FORGED_SEQUENCE, "Nats-Last-Sequence": FORGED_SEQUENCE}
            await stage.inspector.publish(
                stage.subject, frame, headers=headers if number % FORGED_EVERY == 0 else None
            )
        sent.append(frame)
        await asyncio.sleep(interval_s)
    await stage.inspector.flush()
    return sent


async def _publish_raw(nc: Client, subject: str, header_block: bytes, payload: bytes) -> None:
    """An HPUB with `header_block` as it is: nats-py builds only well-formed blocks."""
    size = len(header_block) + len(payload)
    command = f"HPUB {subject} {len(header_block)} {size}\r\n".encode() + header_block + payload + b"\r\n"
    await nc._send_command(command)  # nats-py has no public way to send a malformed block


class Follower(Protocol):
    """What the scenario needs of a follower under test."""

    async def restart(self) -> None:
        """Stop it and start it again from the cursor it kept."""

    async def reconnects(self) -> int:
        """How many times its connection came back, over all its restarts."""


async def run(stage: Stage, follower: Follower, interval_s: float = 0.08) -> list[bytes]:
    """The scenario, 200 frames, one every `interval_s`:

    - frames 1-40: the reader is kicked every 10 frames;
    - NATS restarts before frame 41;
    - frames 41-120: nobody touches the follower, so its JWT (3 s) expires on its own;
    - the follower restarts from its cursor before frame 121, while frames keep coming;
    - frames 121-200: its new connection's JWT expires on its own again.

    Each quiet stretch must show at least one reconnect of the follower, the JWT's expiry.
    The frames sent are exactly the frames stored: the publisher pauses while NATS is down
    (a core-NATS frame sent then would be lost to everyone, which is not what this measures)."""
    sent: list[bytes] = []
    kicks = []
    for first in range(1, 41, 10):
        kicks.append(asyncio.create_task(stage.kick()))
        sent += await publish(stage, 10, interval_s, first)
    assert sum(await asyncio.gather(*kicks)) >= 3, "the follower's connection was hardly ever cut"
    await stage.restart_nats()
    quiet = await quiet_stretch(stage, follower, sent, range(41, 121), interval_s)
    restarting = asyncio.create_task(follower.restart())
    quiet += await quiet_stretch(stage, follower, sent, range(121, 201), interval_s, restarting)
    assert quiet >= 2, "the follower's JWT never expired while it was left alone"
    return sent


async def quiet_stretch(
    stage: Stage,
    follower: Follower,
    sent: list[bytes],
    frames: range,
    interval_s: float,
    restarting: asyncio.Task[None] | None = None,
) -> int:
    """Frames `frames`, added to `sent`, without disturbing the follower (after
    `restarting`, if given, is done); how many times it reconnected after the first 10 of
    them, which may still be the tail of what came before."""
    settle = frames[:10]
    sent.extend(await publish(stage, len(settle), interval_s, settle.start))
    if restarting is not None:
        await restarting
    before = await follower.reconnects()
    sent.extend(await publish(stage, len(frames) - len(settle), interval_s, settle.stop))
    return await follower.reconnects() - before


async def wait_for(condition: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within_s}s: {what}")
        await asyncio.sleep(0.1)


async def ahead_of_history(stage: Stage, delivered: Callable[[], Awaitable[int]]) -> list[tuple[int, bytes]]:
    """History answering behind a frame already seen live (a clustered stream's new leader,
    for a moment), made on demand: with two frames delivered, the inspector sends a copy
    stamped 5 on the stored subject, as nats-server stamps one, before frames 3-5 are
    stored; they come 2.5 s later (longer than the ten reads followers once gave history
    before taking the copy as is and frames 3-4 for a gap). What was stored, frames 1-5."""
    await publish(stage, 2, 0)

    async def two() -> bool:
        return await delivered() >= 2

    await wait_for(two, 20, "the follower delivered the first two frames")
    early = {"Nats-Sequence": "5"}
    await stage.inspector.publish(
        stored_subject(stage.subject), b"the live copy, not its frame", headers=early
    )
    await asyncio.sleep(2.5)
    await publish(stage, 3, 0, first=3)

    async def five() -> bool:
        return await delivered() >= 5

    await wait_for(five, 30, "the follower delivered frames 3-5")
    await asyncio.sleep(0.3)  # nothing more comes: not the early copy, nor a frame twice
    return await stage.stored(5)


async def granted_another_room(stage: Stage, follower: Follower) -> int:
    """The reader is added to another room, which cuts nobody: the control plane's notice
    makes the follower re-authorize by itself. Once its connection holds the new room and
    the follower has reported the reconnect (its report can come a moment after the server
    shows the new connection), how many reconnects it reported: one is right."""
    await stage.grant_another_room()
    await wait_for(stage.holds_another_room, 10, "the follower took up its new room")

    async def reported() -> bool:
        return await follower.reconnects() >= 1

    await wait_for(reported, 10, "the follower reported its reconnect")
    await asyncio.sleep(0.5)  # a second one would have come by now
    return await follower.reconnects()
