"""Notices to an identity about its own rooms, on its own inbox prefix.

A grant changes no live connection (it would cut someone who never asked for the room),
so the identity that gains a room learns of it from `{"event": "granted", "room": …}` on
`identity.notice_subject`, a subject its connections may already subscribe to and
that no peer can publish to (docs/protocol.md). It re-authorizes (reconnects) when it
wants the room. A removal is enforced by the revoker (callout/revoker.py); the `revoked`
notice only tells the client why it was cut. Both are best effort: a client that missed
one gets the current rooms at its next reconnect.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal

from nats.aio.client import Client

from .identity import notice_subject

log = logging.getLogger(__name__)

Event = Literal["granted", "revoked"]


@dataclass(frozen=True)
class Notice:
    identity: str
    event: Event
    room: str

    def body(self) -> bytes:
        return json.dumps({"event": self.event, "room": self.room}).encode()


async def send(nc: Client, notices: list[Notice]) -> None:
    """Publish each notice; a failure is logged, never raised (nothing depends on it)."""
    try:
        for notice in notices:
            await nc.publish(notice_subject(notice.identity), notice.body())
        await nc.flush()
    except Exception as exc:
        log.warning("could not send %d membership notices: %r", len(notices), exc)
