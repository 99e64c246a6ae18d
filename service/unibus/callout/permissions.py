"""What a connection may publish and subscribe to: a pure function of who it is and the
rooms it is a member of (docs/security.md has the same tables in prose).

A peer may send control requests and `$SRV` discovery, publish and subscribe on the
subjects of its own rooms, and receive on its own inbox. Everything else is refused by
nats-server, the JetStream API included, even on a peer's own room's stream: JetStream
answers an API request (and hands out consumer deliveries) on whatever subject the
requester names, published by the server inside the account without any permission
check, so any JetStream permission would let a peer write its answers into the room
bucket, another room or the nonce stream (docs/security.md). Peers read stored frames
through the control plane's `history` instead, and follow them live on each persisted
room's stored subject (`wire.names.stored_subject`), which they may subscribe to and never
publish on: only the stream's republish writes there, so a sequence stamped on a frame
there is the server's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..identity import inbox_prefix
from ..storage import Room
from ..wire.ids import is_room_id
from ..wire.names import stored_subject

DISCOVERY = ("$SRV.PING", "$SRV.PING.>", "$SRV.INFO", "$SRV.INFO.>", "$SRV.STATS", "$SRV.STATS.>")


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    subscribe_deny: tuple[str, ...] = ()

    def claims(self) -> dict[str, object]:
        """The `pub`/`sub` part of a NATS user JWT."""
        sub: dict[str, list[str]] = {"allow": list(self.subscribe)}
        if self.subscribe_deny:
            sub["deny"] = list(self.subscribe_deny)
        return {"pub": {"allow": list(self.publish)}, "sub": sub}


def for_member(
    identity: str, rooms: Iterable[Room], api_prefix: str, room_subject_prefix: str
) -> Permissions:
    """The room subjects are built from the room ids (validated to one plain token on
    create), never taken from the stored row, so no row can widen a grant."""
    publish = [f"{api_prefix}.rooms.>", *DISCOVERY]
    subscribe = [f"{inbox_prefix(identity)}.>"]
    for room in sorted(rooms, key=lambda r: r.id):
        if room.is_member(identity) and is_room_id(room.id):
            subject = f"{room_subject_prefix}.{room.id}"
            publish.append(subject)
            subscribe.append(subject)
            if room.persisted:
                subscribe.append(stored_subject(subject))
    return Permissions(tuple(publish), tuple(subscribe))


def for_anonymous(api_prefix: str, room_subject_prefix: str) -> Permissions:
    """`dev`/`off` auth modes only: a connection without an nkey may call the control
    plane and use every room's subject, never JetStream. It may follow every room's
    stored subject but, like a member, never publish there. Its replies come to a plain
    `_INBOX.<id>` inbox (the `nats` CLI's, nats-py's and nats.js's default: one token, and
    one more for a request), so it may subscribe under `_INBOX`, but nothing four tokens
    deep reaches it: a peer's replies (`_INBOX.<key>.<id>.<token>`) stay out of reach even
    of `_INBOX.>` (nats-server checks a subscription's deny against each message it would
    deliver). The control plane's own inboxes are outside `_INBOX` altogether
    (wire.names.INBOXES), where a deny could not reach JetStream's deliveries."""
    rooms = f"{room_subject_prefix}.*"
    return Permissions(
        (f"{api_prefix}.rooms.>", *DISCOVERY, rooms),
        (rooms, stored_subject(rooms), "_INBOX.>"),
        subscribe_deny=("_INBOX.*.*.>",),
    )
