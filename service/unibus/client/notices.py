"""Notices the control plane sends an identity on its own inbox: a room granted or revoked.

A connection's permissions are fixed when it authenticates, so a room granted since is
of no use until it authenticates again; a notice says when that is worth a reconnect.
A notice is only a hint: acting on one costs a reconnect or a request to the control
plane, never a permission, so a forged or replayed one can do no more than that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ..identity import notice_subject

GRANTED = "granted"
REVOKED = "revoked"


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
    """Reconnect whenever the identity is granted a room, so the room's subjects are in
    the connection's next JWT. The subscription lives as long as the connection."""

    async def on_notice(msg: Msg) -> None:
        notice = parse(msg.data)
        if notice is not None and notice.event == GRANTED:
            await nc.force_reconnect()

    return await nc.subscribe(notice_subject(public_key), cb=on_notice)
