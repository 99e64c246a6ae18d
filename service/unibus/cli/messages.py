"""`unibus send | history | tail`: frames sealed and opened on this side, never the service's."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from itertools import zip_longest
from typing import Any

from ..client import Forbidden, Gap, Message, Opened, Peer, Rejected
from .output import EXIT_FAILED, CliError, emit
from .session import add_peer_options, run_peer


def register(commands: Any) -> None:
    send = _command(commands, "send", "send a message (or each line of stdin) to a room", _send)
    send.add_argument("text", nargs="*", help="the message; without it, one message per stdin line")
    send.set_defaults(func=_send_texts)

    history = _command(commands, "history", "a room's stored messages, decrypted, oldest first", _history)
    history.add_argument("--limit", type=int, help="messages per page (service default 200, cap 1000)")
    history.add_argument("--before", type=int, help="only messages stored before this stream sequence")
    history.add_argument("--all", action="store_true", help="the whole backlog, every page")

    tail = _command(commands, "tail", "print a room's messages live as they arrive", _tail)
    tail.add_argument("--count", type=int, help="exit after this many messages")
    tail.add_argument(
        "--after",
        type=int,
        help="start after this stream sequence (a `seq` printed by --json; 0: the whole room);"
        " default: from now",
    )


def _command(
    commands: Any, name: str, help_text: str, action: Callable[[Peer, argparse.Namespace], Awaitable[int]]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    add_peer_options(parser)
    parser.add_argument("room")
    parser.set_defaults(func=lambda args: run_peer(args, lambda peer: action(peer, args)))
    return parser


def _send_texts(args: argparse.Namespace) -> int:
    """The texts are read before connecting: a Ctrl-C while someone types is then a plain
    interrupt (inside the event loop a blocking read let the first one pass unnoticed)."""
    if args.text:
        args.texts = [" ".join(args.text)]
    else:
        if sys.stdin.isatty():  # otherwise it would wait in silence
            print("reading messages from stdin, one per line; Ctrl-D ends", file=sys.stderr, flush=True)
        args.texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
        if not args.texts:  # exit 0 here would read as "sent"
            raise CliError("nothing sent: no text given and stdin held no line to send")
    return run_peer(args, lambda peer: _send(peer, args))


async def _send(peer: Peer, args: argparse.Namespace) -> int:
    room = await peer.room(args.room)
    for text in args.texts:
        frame = await room.publish(text.encode())
        sent = {"room": room.id, "id": frame.id, "epoch": frame.epoch, "ts": frame.ts_ms}
        emit(args, sent, f"sent {frame.id} to {room.id}")
    await peer.nc.flush()
    return 0


async def _history(peer: Peer, args: argparse.Namespace) -> int:
    """One page, or with --all every page; the JSON uses the wire's names (docs/protocol.md)."""
    room = await peer.room(args.room)
    limit = 1000 if args.all and args.limit is None else args.limit  # --all: the largest pages
    page = await room.history(limit, args.before)
    pages = [page]
    while args.all and page.first_seq is not None and page.first_seq > 1:
        page = await room.history(limit, page.first_seq)
        pages.append(page)
    pages.reverse()  # oldest first, as each page is
    first_seq, last_seq = pages[0].first_seq, pages[-1].last_seq
    if args.json:
        # A service older than `seqs` leaves them out: then each `seq` is null.
        listed = [{"seq": seq, **as_json(m)} for p in pages for seq, m in zip_longest(p.seqs, p.messages)]
        emit(args, {"room": room.id, "messages": listed, "first_seq": first_seq, "last_seq": last_seq}, "")
        return 0
    opened = [m for p in pages for m in p.messages]
    for m in opened:
        show(m)
    if first_seq is not None and first_seq > 1:
        print(f"(older messages: --before {first_seq})", file=sys.stderr)
    return _verdict(opened)


def _verdict(opened: list[Opened]) -> int:
    """Frames that are not unibus messages this identity can open are each told on
    stderr; a count says how many, and a history of nothing but those fails, so an empty
    stdout never passes for an empty room."""
    rejected = sum(isinstance(m, Rejected) for m in opened)
    if not rejected:
        return 0
    print(
        f"unibus: {rejected} of {len(opened)} frames are not unibus messages this identity can open",
        file=sys.stderr,
    )
    return EXIT_FAILED if rejected == len(opened) else 0


async def _tail(peer: Peer, args: argparse.Namespace) -> int:
    """Every stored frame once, in order, through cuts, reconnects, JWT expiries and NATS
    restarts (`Peer.follow`); what happens to the connection is said on stderr. Removal
    from the room ends it with the 403."""
    seen = 0
    try:
        async for item in peer.follow(args.room, args.after, on_status=_status):
            if isinstance(item, Gap):
                _status(f"frames {item.first}-{item.last} are no longer stored: skipped")
                continue
            if args.json:
                emit(args, {"seq": item.seq, **as_json(item.message)}, "")
            else:
                show(item.message)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    except Forbidden:
        _status(f"no longer a member of {args.room}")
        raise
    return 0


def _status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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
