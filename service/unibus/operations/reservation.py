"""The control plane's own streams reserve their space in the JetStream store.

JetStream accounts a stream's `max_bytes` as reserved the moment the stream is created,
and refuses a new stream whose reservation no longer fits the store ("insufficient
storage resources", `JSStorageResourcesExceededErr`). Room streams all carry `max_bytes`, so together they can
never take more than the store holds; giving the room bucket and the nonce stream a
`max_bytes` too puts their space out of the rooms' reach. Room traffic then fills only
what rooms reserved, and `info`, `members.add` or a replay check keep writing when every
room is full (docs/operations.md, "Storage layout").
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from nats.js import JetStreamContext
from nats.js import errors as jserr

from ..wire.jscodes import JSStorageResourcesExceededErr

log = logging.getLogger(__name__)


async def reserve(js: JetStreamContext, stream: str, max_bytes: int, timeout_s: float) -> None:
    """Give an existing stream (one created before reservations, or by another version)
    its reservation. A store too full to grant it is logged and left as it is: the
    service still runs, as it did before, and the operator is told why."""
    info = await asyncio.wait_for(js.stream_info(stream), timeout_s)
    if (info.config.max_bytes or -1) == max_bytes:
        return
    try:
        await asyncio.wait_for(js.update_stream(replace(info.config, max_bytes=max_bytes)), timeout_s)
    except jserr.APIError as err:
        if err.err_code != JSStorageResourcesExceededErr:
            raise
        log.warning(
            "stream %s: the JetStream store cannot reserve %d bytes for it (%s); room traffic "
            "could starve it: raise max_file_store or lower UNIBUS_ROOM_MAX_BYTES",
            stream,
            max_bytes,
            err.description,
        )
