"""What the fault tests compare before and after: the rows, the streams, and the frames."""

from __future__ import annotations

from nats.aio.client import Client
from nats.js import JetStreamContext

from unibus.client import ControlClient
from unibus.wire import jsapi
from unibus.wire.gather import gather
from unibus.wire.names import ROOM_BUCKET, ROOM_STREAM_PREFIX, SERVICE_NAME, ping_subject

from .retry import with_retries
from .waiting import wait_until


async def room_rows(js: JetStreamContext) -> set[str]:
    """Keys of the room bucket whose latest entry is a row (not a delete marker), read from
    its stream directly: a KV watch-based key listing can come back empty on a busy node."""
    stream, prefix = f"KV_{ROOM_BUCKET}", f"$KV.{ROOM_BUCKET}."
    info = await js.stream_info(stream, subjects_filter=f"{prefix}>")
    rows = set()
    for subject in info.state.subjects or {}:
        last = await js.get_last_msg(stream, subject)
        if (last.headers or {}).get("KV-Operation") not in ("DEL", "PURGE"):
            rows.add(subject.removeprefix(prefix))
    return rows


async def stream_names(nc: Client) -> set[str]:
    """Every stream's name (nats-py's `streams_info` reads only the first page of 256)."""
    return set(await jsapi.stream_names(nc, None, 5))


async def room_streams(nc: Client) -> set[str]:
    """Room ids with a stream."""
    return {
        n.removeprefix(ROOM_STREAM_PREFIX) for n in await stream_names(nc) if n.startswith(ROOM_STREAM_PREFIX)
    }


async def assert_rows_match_streams(nc: Client) -> None:
    """No row without its stream and no stream without its row (matrix rooms only)."""
    rows, streams = await room_rows(nc.jetstream(timeout=5)), await room_streams(nc)
    assert rows - streams == set(), f"rows without a stream: {sorted(rows - streams)}"
    assert streams - rows == set(), f"streams without a row: {sorted(streams - rows)}"


async def publish_stored(nc: Client, room_id: str, count: int, tag: str) -> list[bytes]:
    """Frames published over core NATS, returned once the room's stream holds them (room
    streams send no acknowledgements: docs/security.md), so each is durable."""
    js = nc.jetstream(timeout=5)
    stream = f"UNIBUS_{room_id}"
    before = (await js.stream_info(stream)).state.last_seq
    frames = [f"{tag}-{room_id}-{i}".encode() for i in range(count)]
    for frame in frames:
        await nc.publish(f"unibus.room.{room_id}", frame)
    await nc.flush()

    async def stored() -> bool:
        return (await js.stream_info(stream)).state.last_seq >= before + count

    await wait_until(stored, f"{stream} stores {count} frames")
    return frames


async def history(client: ControlClient, room_id: str) -> list[bytes]:
    async def read(_: int) -> list[bytes]:
        return list(reversed([f async for f in client.backlog(room_id)]))

    return await with_retries(read)


async def instances_answering(nc: Client, service: str = SERVICE_NAME, wait_s: float = 1.0) -> int:
    """How many instances answer a `$SRV.PING` for the service right now."""
    return len(await gather(nc, ping_subject(service), within_s=wait_s, idle_s=wait_s))
