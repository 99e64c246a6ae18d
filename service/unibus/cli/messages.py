"""`unibus send | history | tail`: frames sealed and opened on this side, never the service's."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ..client import Message, Opened, Peer, Rejected, Room
from .session import add_peer_options, emit, run_peer


def register(commands: Any) -> None:
    send = _command(commands, "send", "send a message (or each line of stdin) to a room", _send)
    send.add_argument("text", nargs="*", help="the message; without it, one message per stdin line")

    history = _command(commands, "history", "a room's stored messages, decrypted, oldest first", _history)
    history.add_argument("--limit", type=int, help="messages per page (service default 200, cap 1000)")
    history.add_argument("--before", type=int, help="only messages stored before this stream sequence")
    history.add_argument("--all", action="store_true", help="the whole backlog, every page")

    tail = _command(commands, "tail", "print a room's messages live as they arrive", _tail)
    tail.add_argument("--count", type=int, help="exit after this many messages")


def _command(
    commands: Any, name: str, help_text: str, action: Callable[[Peer, argparse.Namespace], Awaitable[int]]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    add_peer_options(parser)
    parser.add_argument("room")
    parser.set_defaults(func=lambda args: run_peer(args, lambda peer: action(peer, args)))
    return parser


async def _send(peer: Peer, args: argparse.Namespace) -> int:
    texts = [" ".join(args.text)] if args.text else [line.rstrip("\n") for line in sys.stdin if line.strip()]
    room = await peer.room(args.room)
    for text in texts:
        frame = await room.publish(text.encode())
        emit(args, {"room": room.id, "id": frame.id, "epoch": frame.epoch, "ts": frame.ts_ms}, frame.id)
    await peer.nc.flush()
    return 0


async def _history(peer: Peer, args: argparse.Namespace) -> int:
    room = await peer.room(args.room)
    next_before: int | None = None
    if args.all:
        opened = [m async for m in room.backlog()]
        opened.reverse()
    else:
        page = await room.history(args.limit, args.before)
        opened = page.messages
        next_before = page.first_seq if page.first_seq is not None and page.first_seq > 1 else None
    if args.json:
        emit(
            args, {"room": room.id, "messages": [as_json(m) for m in opened], "next_before": next_before}, ""
        )
    else:
        for m in opened:
            show(m)
        if next_before is not None:
            print(f"(older messages: --before {next_before})", file=sys.stderr)
    return 0


async def _tail(peer: Peer, args: argparse.Namespace) -> int:
    room: Room = await peer.room(args.room)
    seen = 0
    async with room.subscribe() as live:
        print(f"listening on {room.subject}", file=sys.stderr, flush=True)
        async for m in live:
            if args.json:
                emit(args, as_json(m), "")
            else:
                show(m)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    return 0


def as_json(m: Opened) -> dict[str, Any]:
    if isinstance(m, Rejected):
        return {"rejected": m.reason.value, "detail": m.detail, "from": m.sender}
    return {"id": m.id, "from": m.sender, "ts": m.ts_ms, "epoch": m.epoch, "text": m.text}


def show(m: Opened) -> None:
    """Messages on stdout; rejected frames on stderr, with the reason, so a pipe gets
    only what verified."""
    if isinstance(m, Message):
        when = datetime.fromtimestamp(m.ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{when}  {m.sender[:8]}…  {m.text}", flush=True)
    else:
        print(f"unibus: rejected frame ({m.reason.value}): {m.detail}", file=sys.stderr, flush=True)
