"""The JetStream stream that captures a persisted room, owned by the control plane.

The config must stay field-for-field what the Go client's own create-or-update sends
(name, single subject, limits retention, file storage) plus replicas, so that the
client's later ensure is a no-op. Nothing here may rely on `allow_direct`: a Go client's
update of the stream silently turns it off.

Replication is the one field the Go client cannot match: it sends `num_replicas: 0`, and
nats-server (measured on 2.15.1) treats that update of an R3 stream as a request for R1
and scales the stream down without an error, keeping every message. So whenever the
service ensures a room's stream it also checks the replication, and scales a reduced
stream back up (with a warning in the log): history keeps working throughout, and the
room is back at its replication the next time it is created or read. The service only
ever raises replication, so an operator's deliberate R5 is left alone.

Every room stream **republishes** what it stores to the room's stored subject
(`<subject>.stored`, `wire.names.stored_subject`), where nats-server stamps each copy with its
stream sequence (`Nats-Sequence`, `Nats-Last-Sequence`): that is how a follower knows
which frames it has and which it missed (docs/protocol.md, "Following a room"). A stream
made before republish existed, or one a client's update stripped of it, gets it back the
same way as its replication: on the room's next create or read (measured on 2.15.1: an
update adds republish to a stream in place, keeping every message). A follower always
reads history right after subscribing, so its own first read is what upgrades the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace

import nats.js.errors as jserr
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RePublish, RetentionPolicy, StorageType, StreamConfig, StreamInfo

from .errors import DomainError
from .storage.rooms import Room
from .wire.jscodes import JSStreamNameExistErr
from .wire.names import CONTROL_PREFIX, stored_subject

log = logging.getLogger(__name__)

ROOM_MARK = "unibus.room"
"""Stream metadata naming the room a stream was created for by this service."""
PREFIX_MARK = "unibus.prefix"
"""…and the control prefix of the deployment that created it: room streams share one
name space on a JetStream, deployments with other prefixes must not adopt each other's."""


class StreamTaken(DomainError):
    """The room's stream name is held by a stream that is not this deployment's stream of
    that room: another deployment's room of the same id, or a stream made by hand
    without the room's subject. Adopting it would hand the room someone else's frames."""


_TAKEN = "room id in use by another deployment or stream on this JetStream"


@dataclass(frozen=True)
class StreamPolicy:
    """What every room stream is held to: replication, and per-room limits so that one
    room's publishers cannot fill the store for everyone (docs/operations.md)."""

    replicas: int
    max_bytes: int
    """Oldest frames are dropped beyond this (discard old): a room keeps its newest. A new
    room reserves it; a stream that already reserves more keeps its reservation, since
    lowering it would drop stored frames (the operator's lowered default applies to new
    rooms)."""
    max_msg_size: int
    """Larger frames are refused by the server, so every stored frame fits in a history page."""
    api_prefix: str = CONTROL_PREFIX
    """The deployment the streams belong to (their `PREFIX_MARK`)."""

    def holds(self, replicas: int, max_bytes: int, max_msg_size: int, no_ack: bool) -> bool:
        return (
            replicas >= self.replicas
            and max_bytes >= self.max_bytes
            and max_msg_size == self.max_msg_size
            and no_ack
        )


PAGE_OVERHEAD = 4096
"""Room a history page needs besides its frames: envelope and reply headers. A reply's
`PageBudget` (history/reply.py) budgets a page with it and `largest_frame` bounds a
stored frame with it, so the one value is what guarantees that every page holds at
least one frame."""


def largest_frame(max_payload: int) -> int:
    """The largest frame whose one-frame history page still fits in `max_payload` as
    JSON, where base64 makes it 4/3 as large (msgpack carries it as it is)."""
    return (max_payload - PAGE_OVERHEAD) * 3 // 4


def republishes(republish: RePublish | None, room: Room) -> bool:
    """Whether a stream's republish is the one every room stream needs: the whole of
    each stored frame, from the room's subject to its stored subject."""
    return (
        republish is not None
        and republish.src == room.subject
        and republish.dest == stored_subject(room.subject)
        and not republish.headers_only
    )


def room_republish(room: Room) -> RePublish:
    return RePublish(src=room.subject, dest=stored_subject(room.subject), headers_only=False)


def room_stream_config(room: Room, policy: StreamPolicy) -> StreamConfig:
    return StreamConfig(
        name=room.stream,
        subjects=[room.subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=max(1, policy.replicas),
        max_bytes=policy.max_bytes,
        max_msg_size=policy.max_msg_size,
        discard=DiscardPolicy.OLD,
        # No acknowledgements: JetStream would publish each one, from inside the account
        # and unchecked, to whatever reply subject the publisher chose, such as a key of
        # the room bucket (docs/security.md). Peers publish over core NATS anyway.
        no_ack=True,
        # Every stored frame, stamped with its sequence, to the room's stored subject.
        republish=room_republish(room),
        # What the orphan sweep recognises as ours (orphans.py).
        metadata={ROOM_MARK: room.id, PREFIX_MARK: policy.api_prefix},
    )


async def ensure_room_stream(
    js: JetStreamContext, room: Room, policy: StreamPolicy, timeout_s: float
) -> StreamInfo:
    """Create the room's stream, or accept the one that exists, restoring its replication,
    limits and republish if an update (a Go client's, without the boundary) reset them, or
    it was made before republish. Idempotent. Returns JetStream's answer as nats-py
    reads it (history/state.py takes the read's state from it)."""
    config = room_stream_config(room, policy)
    try:
        info = await asyncio.wait_for(js.add_stream(config), timeout_s)
    except jserr.APIError as err:
        # A stream of that name exists with another config (e.g. a Go client's update
        # changed replicas or allow_direct); it may still capture the room's subject.
        if err.err_code != JSStreamNameExistErr:
            raise
        info = await asyncio.wait_for(js.stream_info(room.stream), timeout_s)
        if room.subject not in (info.config.subjects or []):
            log.warning("stream %s exists without subject %s: not adopted", room.stream, room.subject)
            raise StreamTaken(_TAKEN) from err
        owner = (info.config.metadata or {}).get(PREFIX_MARK)
        if owner is not None and owner != policy.api_prefix:
            log.warning("stream %s belongs to the deployment at %s: not adopted", room.stream, owner)
            raise StreamTaken(_TAKEN) from err
        current = info.config
        replicas = current.num_replicas or 1
        held = policy.holds(
            replicas, current.max_bytes or -1, current.max_msg_size or -1, bool(current.no_ack)
        )
        if not held:
            log.warning(
                "stream %s is at R%d, max_bytes %s, max_msg_size %s (a client's update?); restoring %s",
                room.stream,
                replicas,
                current.max_bytes,
                current.max_msg_size,
                policy,
            )
        elif not republishes(current.republish, room):
            # Made before republish existed (or a client's update dropped it): not a warning.
            log.info("stream %s gets its republish to %s", room.stream, stored_subject(room.subject))
        if not held or not republishes(current.republish, room):
            restored = replace(
                current,
                num_replicas=max(replicas, policy.replicas),
                max_bytes=max(current.max_bytes or -1, policy.max_bytes),
                max_msg_size=policy.max_msg_size,
                discard=DiscardPolicy.OLD,
                no_ack=True,
                republish=room_republish(room),
            )
            info = await asyncio.wait_for(js.update_stream(restored), timeout_s)
    return info


async def delete_room_stream(js: JetStreamContext, stream: str, timeout_s: float) -> None:
    with contextlib.suppress(jserr.NotFoundError):
        await asyncio.wait_for(js.delete_stream(stream), timeout_s)
