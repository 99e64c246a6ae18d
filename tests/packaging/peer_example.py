"""A peer's own code, as it would call the client library: tests/test_packaging.py runs a
peer's mypy --strict on it against the installed wheel (not this checkout), which only
type-checks because the wheel carries py.typed. It is never run, only checked."""

from __future__ import annotations

import nats

from unibus.client import HistoryPage, Identity, Message, Peer, Rejected


async def post_and_read_back(url: str, seed_file: str, text: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        peer = Peer(nc, Identity.load(seed_file))
        room = await peer.create_room(name="lobby", encrypted=True)
        await room.publish(text.encode())
        page: HistoryPage = await room.history(limit=10)
        lines = []
        for opened in page.messages:
            if isinstance(opened, Message):
                lines.append(f"{opened.sender}: {opened.text}")
            elif isinstance(opened, Rejected):
                lines.append(f"rejected: {opened.reason.value}")
        return lines
    finally:
        await nc.close()
