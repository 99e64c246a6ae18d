"""What a connection may publish and subscribe to: a pure function of who it is and the
rooms it is a member of (docs/security.md has the same tables in prose).

A peer may send control requests and `$SRV` discovery, publish and subscribe on the
subjects of its own rooms, read the stream of its own persisted rooms the way the Go
client does (info, direct get, its own consumers) and receive on its own inbox. Anything
not listed is refused by nats-server: the JetStream API of other streams, every stream
change (create, update, delete, purge), the room bucket, the nonce stream, the control
subjects as a subscriber, and other identities' inboxes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..identity import inbox_prefix
from ..storage import Room

DISCOVERY = ("$SRV.PING", "$SRV.PING.>", "$SRV.INFO", "$SRV.INFO.>", "$SRV.STATS", "$SRV.STATS.>")


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def claims(self) -> dict[str, object]:
        """The `pub`/`sub` part of a NATS user JWT."""
        return {"pub": {"allow": list(self.publish)}, "sub": {"allow": list(self.subscribe)}}


def stream_read_subjects(stream: str) -> tuple[str, ...]:
    """A member's own reads of its room's stream: what the Go client's history and
    consumers send. Never a stream change: a member who could update the stream could
    point its subjects at other rooms or inboxes and read them through it."""
    api = "$JS.API"
    return (
        f"{api}.STREAM.INFO.{stream}",
        f"{api}.STREAM.MSG.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}.>",
        f"{api}.CONSUMER.CREATE.{stream}",
        f"{api}.CONSUMER.CREATE.{stream}.>",
        f"{api}.CONSUMER.DURABLE.CREATE.{stream}.*",
        f"{api}.CONSUMER.INFO.{stream}.*",
        f"{api}.CONSUMER.DELETE.{stream}.*",
        f"{api}.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    )


def for_member(identity: str, rooms: Iterable[Room], api_prefix: str) -> Permissions:
    publish = [f"{api_prefix}.rooms.>", *DISCOVERY]
    subscribe = [f"{inbox_prefix(identity)}.>"]
    for room in sorted(rooms, key=lambda r: r.id):
        if not room.is_member(identity):
            continue
        publish.append(room.subject)
        subscribe.append(room.subject)
        if room.persisted:
            publish.extend(stream_read_subjects(room.stream))
    return Permissions(tuple(publish), tuple(subscribe))


def for_anonymous(api_prefix: str, room_subject_prefix: str) -> Permissions:
    """`dev`/`off` auth modes only: a connection without an nkey may call the control
    plane and use every room's subject (demos with the `nats` CLI), never JetStream."""
    rooms = f"{room_subject_prefix}.*"
    return Permissions(
        (f"{api_prefix}.rooms.>", *DISCOVERY, rooms),
        (rooms, "_INBOX.>"),
    )
