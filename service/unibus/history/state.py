"""The room stream's state a history read works from, from one `STREAM.INFO`.

The state is asked for through the read index (readindex.py), so concurrent reads share
one request and each is answered from a request sent after it arrived. The answer is read
raw: a read needs three numbers, two timestamps and the config fields that say whether
the stream is as streams.py's policy wants it, not nats-py's full StreamInfo (whose
decoding costs more than the request). A stream that is missing or not as it should be is
ensured on the way (streams.ensure_room_stream), which costs nothing when, as nearly
always, it is.
"""

from __future__ import annotations

import calendar
import functools
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import nats.js.errors as jserr
from nats.js import JetStreamContext
from nats.js.api import RePublish

from ..storage.rooms import Room
from ..streams import StreamPolicy, ensure_room_stream, republishes
from ..wire.jscodes import JSStreamNotFoundErr


@dataclass(frozen=True)
class StreamState:
    first_seq: int
    last_seq: int
    messages: int
    created: str = ""
    """When the stream was made, as JetStream reports it: another value is another
    stream of the same name (cache.py); empty where unknown."""
    last_ts: int = 0
    """When its last message was stored, in ns since the epoch; 0 where unknown."""

    def stores_every_from(self, seq: int) -> bool:
        """Whether every sequence from `seq` to the last was stored when this state was
        read: `seq` is within the stream, which has no interior deletes. A read from
        there that ends early is behind this state (a clustered stream's consumer placed
        on a lagging replica), not a gap."""
        contiguous = self.messages == self.last_seq - self.first_seq + 1
        return contiguous and self.first_seq <= seq <= self.last_seq


@dataclass(frozen=True)
class Snapshot:
    """What a history read needs to know about a stream, from one STREAM.INFO."""

    state: StreamState
    subjects: tuple[str, ...]
    replicas: int
    max_bytes: int
    max_msg_size: int
    no_ack: bool
    republish: RePublish | None = None


@functools.lru_cache(maxsize=4096)
def rfc3339_ns(text: str) -> int:
    """JetStream's `2026-11-29T19:31:31.802337172Z` → ns since the epoch; 0 if it is not
    that shape (Python's datetime stops at microseconds, JetStream does not). Cached: a
    hot room's reads see the same `last_ts` until its next frame, and strptime is slow."""
    head, _, fraction = text.removesuffix("Z").partition(".")
    try:
        seconds = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
        return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])
    except ValueError:
        return 0


async def snapshot_of(asked: Awaitable[dict[str, Any]]) -> Snapshot | None:
    """The snapshot in a raw STREAM.INFO answer (`ReadIndex.ask`'s). None: no stream."""
    try:
        info = await asked
    except jserr.APIError as err:
        if err.err_code == JSStreamNotFoundErr:
            return None
        raise
    return _decoded(info)


@dataclass
class _LastDecoded:
    """The last answer decoded, and its snapshot: the read index hands one answer dict to
    every read of its round, so a round is decoded once, not once per read. The answer is
    held, so `is` cannot match a later dict that reused its id."""

    answer: dict[str, Any] | None = None
    snapshot: Snapshot | None = None


_LAST = _LastDecoded()


def _decoded(info: dict[str, Any]) -> Snapshot:
    if _LAST.answer is info and _LAST.snapshot is not None:
        return _LAST.snapshot
    snapshot = _snapshot(info)
    _LAST.answer, _LAST.snapshot = info, snapshot
    return snapshot


def _snapshot(info: dict[str, Any]) -> Snapshot:
    state, config = info["state"], info["config"]
    return Snapshot(
        StreamState(
            state["first_seq"],
            state["last_seq"],
            state["messages"],
            str(info.get("created", "")),
            rfc3339_ns(str(state.get("last_ts", ""))),
        ),
        tuple(config.get("subjects") or ()),
        int(config.get("num_replicas") or 1),
        int(config.get("max_bytes", -1)),
        int(config.get("max_msg_size", -1)),
        bool(config.get("no_ack", False)),
        _republish(config.get("republish")),
    )


async def room_stream_for_read(
    js: JetStreamContext, room: Room, policy: StreamPolicy, timeout_s: float, snapshot: Snapshot | None
) -> StreamState | None:
    """The stream state a history read works from, given the room stream's snapshot
    (None: no stream), ensuring a persisted room's stream on the way: created if missing
    (lazy backfill), restored if its replication, limits or republish were changed or
    never set."""
    if not room.persisted:
        return snapshot.state if snapshot else None
    if (
        snapshot is not None
        and room.subject in snapshot.subjects
        and policy.holds(snapshot.replicas, snapshot.max_bytes, snapshot.max_msg_size, snapshot.no_ack)
        and republishes(snapshot.republish, room)
    ):
        return snapshot.state
    state = (await ensure_room_stream(js, room, policy, timeout_s)).state
    # Without `created` and `last_ts` the cache keeps nothing of this read: the next one,
    # from a STREAM.INFO, will.
    return StreamState(first_seq=state.first_seq, last_seq=state.last_seq, messages=state.messages)


def _republish(raw: object) -> RePublish | None:
    if not isinstance(raw, dict):
        return None
    return RePublish(src=raw.get("src"), dest=raw.get("dest"), headers_only=raw.get("headers_only"))
