"""The JetStream stream that captures a persisted room, owned by the control plane.

The config must stay field-for-field what the Go client's own create-or-update sends
(name, single subject, limits retention, file storage) plus replicas, so that the
client's later ensure is a no-op. Nothing here may rely on `allow_direct`: a Go client's
update of the stream silently turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import nats.js.errors as jserr
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from .storage.rooms import Room

# JSStreamNameExistErr: a stream of that name exists with another config (e.g. a Go
# client's update changed replicas or allow_direct). It still captures the subject.
_NAME_IN_USE = 10058


@dataclass(frozen=True)
class StreamState:
    first_seq: int
    last_seq: int
    messages: int
    allow_direct: bool


def room_stream_config(room: Room, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=room.stream,
        subjects=[room.subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=max(1, replicas),
    )


async def ensure_room_stream(
    js: JetStreamContext, room: Room, replicas: int, timeout_s: float
) -> StreamState:
    """Create the room's stream, or accept the one that exists. Idempotent."""
    config = room_stream_config(room, replicas)
    try:
        info = await asyncio.wait_for(js.add_stream(config), timeout_s)
    except jserr.APIError as err:
        if err.err_code != _NAME_IN_USE:
            raise
        info = await asyncio.wait_for(js.stream_info(room.stream), timeout_s)
        if room.subject not in (info.config.subjects or []):
            raise RuntimeError(f"stream {room.stream} exists without subject {room.subject}") from err
    return _state(info)


async def room_stream_state(js: JetStreamContext, stream: str, timeout_s: float) -> StreamState | None:
    try:
        info = await asyncio.wait_for(js.stream_info(stream), timeout_s)
    except jserr.NotFoundError:
        return None
    return _state(info)


async def delete_room_stream(js: JetStreamContext, stream: str, timeout_s: float) -> None:
    with contextlib.suppress(jserr.NotFoundError):
        await asyncio.wait_for(js.delete_stream(stream), timeout_s)


def _state(info: object) -> StreamState:
    state = info.state  # type: ignore[attr-defined]
    config = info.config  # type: ignore[attr-defined]
    return StreamState(
        first_seq=state.first_seq,
        last_seq=state.last_seq,
        messages=state.messages,
        allow_direct=bool(config.allow_direct),
    )
