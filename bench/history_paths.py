"""The three ways to read a room's last N frames that the benchmark compares.

service:  a signed request through the control plane (what peers and the shim do);
baseline: the original Go endpoint's algorithm (stream info, then one message get per
          sequence), done from Python;
floor:    the window streamed straight from JetStream into Python by a short-lived
          consumer, with no service, signature or encoding in between.
"""

from __future__ import annotations

import json

from nats.aio.client import Client

from unibus.client import ControlClient
from unibus.history.query import Window
from unibus.history.reader import read_window
from unibus.history.reply import MSGPACK, PageBudget


async def via_service(client: ControlClient, room: str, limit: int, accept_json: bool = True) -> int:
    if accept_json:
        data, _ = await client.request_raw(f"{room}.history", f"limit={limit}".encode())
        return len(json.loads(data)["messages"])
    return len((await client.history(room, limit=limit)).frames)


async def baseline(nc: Client, stream: str, limit: int) -> int:
    js = nc.jetstream()
    state = (await js.stream_info(stream)).state
    start = max(state.first_seq, state.last_seq - limit + 1)
    frames = []
    for seq in range(start, state.last_seq + 1):
        frames.append((await js.get_msg(stream, seq)).data)
    return len(frames)


async def floor(nc: Client, stream: str, last_seq: int, limit: int) -> int:
    win = Window(max(1, last_seq - limit + 1), last_seq)
    read = await read_window(nc, stream, win, 5.0, PageBudget.for_reply(nc.max_payload, MSGPACK))
    return len(read.frames)
