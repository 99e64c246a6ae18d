"""Notices the control plane sends an identity on its own inbox: a room granted or revoked.

A connection's permissions are fixed when it authenticates, so a room granted since is
of no use until it authenticates again; a notice says when that is worth a reconnect.
A notice is only a hint: acting on one costs a reconnect or a request to the control
plane, never a permission, so a forged or replayed one can do no more than that.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ..identity import notice_subject

GRANTED = "granted"
REVOKED = "revoked"

REAUTHORIZE_EVERY_S = 1.0
"""At most one grant-driven reconnect this often: anyone may add anyone to rooms, and a
burst of adds (five a second in issue 19) would otherwise cost the identity five
reconnects a second, each a gap in what its plain subscriptions hear live. A grant
inside the interval is taken up at its end, by one reconnect for all of them."""


@dataclass(frozen=True)
class Notice:
    event: str
    """`granted` or `revoked` (others may come later: ignore them)."""
    room: str


def parse(data: bytes) -> Notice | None:
    """The notice in a message body; None for anything that is not one."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    event, room = body.get("event"), body.get("room")
    if not isinstance(event, str) or not isinstance(room, str):
        return None
    return Notice(event, room)


async def reauthorize_on_grant(nc: Client, public_key: str) -> Subscription:
    """Reconnect when the identity is granted a room, so the room's subjects are in the
    connection's next JWT (at most once per `REAUTHORIZE_EVERY_S`; grants in between wait
    for one reconnect at its end). The subscription lives as long as the connection."""
    loop = asyncio.get_running_loop()
    last = -REAUTHORIZE_EVERY_S
    scheduled: asyncio.TimerHandle | None = None
    running: set[asyncio.Task[None]] = set()

    def reauthorize() -> None:
        nonlocal last, scheduled
        scheduled, last = None, loop.time()
        task = loop.create_task(nc.force_reconnect())
        running.add(task)
        task.add_done_callback(running.discard)

    async def on_notice(msg: Msg) -> None:
        nonlocal scheduled
        notice = parse(msg.data)
        if notice is None or notice.event != GRANTED or scheduled is not None:
            return  # not a grant, or one the coming reconnect takes up anyway
        wait = last + REAUTHORIZE_EVERY_S - loop.time()
        if wait > 0:
            scheduled = loop.call_later(wait, reauthorize)
        else:
            reauthorize()

    return await nc.subscribe(notice_subject(public_key), cb=on_notice)
