"""Live frames lost under membership churn (issue 19): strangers add a member to rooms of
their own every 200 ms while the room's owner publishes 100 frames a second; the member
listens on two connections, one a plain live subscription to the room's subject, one
`Peer.follow`. Counted against what was sent, per 10,000 frames.

`python -m bench.follow_churn` prints its rows; `make bench` includes them in
docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

from unibus.client import Followed, Identity, Message, Peer

from .boundary import bounded, wait_answering

RATE = 100
"""Frames a second the owner aims at (the row says what it reached)."""
ADD_EVERY_S = 0.2
"""Pause between one stranger's add and the next."""


async def churn(url: str, frames: int) -> tuple[int, int, int, int, int, float]:
    """(sent, received live, followed, duplicates followed, adds made, seconds it took)."""
    owner = await Peer.connect(url, Identity.generate())
    member_id = Identity.generate()
    listener = await Peer.connect(url, member_id)
    follower = await Peer.connect(url, member_id)
    strangers = [await Peer.connect(url, Identity.generate()) for _ in range(3)]
    await owner.create_room("churned", encrypted=False)
    await owner.add_member("churned", member_id.public_key)
    await asyncio.sleep(1.5)  # the add's cut has come and gone
    room = await owner.room("churned")
    live: list[str] = []
    followed: list[str] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async with (await listener.room("churned")).subscribe() as messages:
            ready.set()
            async for message in messages:
                if isinstance(message, Message):
                    live.append(message.id)

    async def follow() -> None:
        async for item in follower.follow("churned", on_status=lambda _: None):
            if isinstance(item, Followed) and isinstance(item.message, Message):
                followed.append(item.message.id)

    adds = 0
    stop = asyncio.Event()

    async def add_forever() -> None:
        nonlocal adds
        while not stop.is_set():
            stranger = strangers[adds % len(strangers)]
            with contextlib.suppress(Exception):  # a 429 now and then: the next one goes
                await stranger.create_room(f"lure-{adds}", encrypted=False)
                await stranger.add_member(f"lure-{adds}", member_id.public_key)
            adds += 1
            await asyncio.sleep(ADD_EVERY_S)

    tasks = [asyncio.create_task(listen()), asyncio.create_task(follow())]
    await ready.wait()
    await asyncio.sleep(1.0)  # the follower is listening too
    adding = asyncio.create_task(add_forever())
    sent: list[str] = []
    started = asyncio.get_running_loop().time()
    for i in range(frames):
        sent.append((await room.publish(f"frame {i}".encode())).id)
        await asyncio.sleep(1 / RATE)
    await owner.nc.flush()
    elapsed = asyncio.get_running_loop().time() - started
    stop.set()
    await adding
    for _ in range(300):  # the follower catches up from history; the live view cannot
        if len(set(followed)) >= len(sent):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    for task in tasks:
        task.cancel()
    for peer in (owner, listener, follower, *strangers):
        await peer.nc.close()
    wanted = set(sent)
    return (
        len(sent),
        len(wanted & set(live)),
        len(wanted & set(followed)),
        len(followed) - len(set(followed)),
        adds,
        elapsed,
    )


async def measure(workdir: Path, quick: bool) -> list[str]:
    frames = 1000 if quick else 10_000
    with bounded(workdir / "follow", instances=1) as (server, _):
        await wait_answering(server.url)
        sent, live, followed, duplicates, adds, elapsed = await churn(server.url, frames)
    per = 10_000 / sent
    return [
        f"| live frames lost per 10,000 under membership churn ({adds} adds of the member by strangers"
        f" and {sent:,} frames in {elapsed:.0f} s): plain live subscription / `Peer.follow`"
        f" | {(sent - live) * per:,.0f} / {(sent - followed) * per:,.0f} ({duplicates} duplicates) | 0 |",
    ]


def main() -> None:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix="unibus-bench-follow-") as tmp:
        print("\n".join(asyncio.run(measure(Path(tmp), quick))))


if __name__ == "__main__":
    main()
