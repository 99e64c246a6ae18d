"""`unibus room …`: create, list, inspect and manage rooms; keys are sealed on this side."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ..client import Peer
from .output import emit
from .session import add_peer_options, run_peer

PeerAction = Callable[[Peer, argparse.Namespace], Awaitable[None]]


def register(commands: Any) -> None:
    room = commands.add_parser("room", help="create, list and manage rooms")
    actions = room.add_subparsers(dest="action", required=True)

    create = _action(actions, "create", "create a room (encrypted and persisted unless told otherwise)")
    create.add_argument("room", nargs="?", help="room id (default: a random one)")
    create.add_argument("--name", default="", help="display name")
    create.add_argument("--plain", action="store_true", help="no end-to-end encryption")
    create.add_argument("--ephemeral", action="store_true", help="no durable history")
    create.set_defaults(func=_runner(_create))

    _action(actions, "list", "rooms you are a member of").set_defaults(func=_runner(_list))
    for name, help_text, handler in (
        ("info", "a room's details", _info),
        ("members", "a room's members and roles", _members),
        ("rotate", "seal a new key epoch to every member", _rotate),
        ("delete", "delete a room and its history", _delete),
    ):
        parser = _action(actions, name, help_text)
        parser.add_argument("room")
        parser.set_defaults(func=_runner(handler))

    add = _action(actions, "add", "add a member, sealing the current room key to them")
    add.add_argument("room")
    add.add_argument("member", help="the member's public key (U…)")
    add.add_argument("--owner", action="store_true", help="make them an owner")
    add.set_defaults(func=_runner(_add))

    remove = _action(actions, "remove", "remove a member (rotates the key of an encrypted room)")
    remove.add_argument("room")
    remove.add_argument("member", help="the member's public key (U…)")
    remove.set_defaults(func=_runner(_remove))


def _action(actions: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
    add_peer_options(parser)
    return parser


def _runner(handler: PeerAction) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def action(peer: Peer) -> int:
            await handler(peer, args)
            return 0

        return run_peer(args, action)

    return run


def _describe(info: dict[str, Any]) -> str:
    traits = ("encrypted" if info["encrypted"] else "plain", info["mode"])
    return f"{info['id']}  {', '.join(traits)}  subject {info['subject']}"


async def _create(peer: Peer, args: argparse.Namespace) -> None:
    room = await peer.create_room(
        args.room,
        encrypted=not args.plain,
        mode="ephemeral" if args.ephemeral else "matrix",
        name=args.name,
    )
    emit(args, room.info, f"created {_describe(room.info)}")


async def _list(peer: Peer, args: argparse.Namespace) -> None:
    rooms = await peer.control.list_rooms()
    emit(args, {"rooms": rooms}, "\n".join(_describe(r) for r in rooms) or "(no rooms)")


async def _info(peer: Peer, args: argparse.Namespace) -> None:
    info = await peer.control.info(args.room)
    emit(args, info, _details(info))


def _details(info: dict[str, Any]) -> str:
    """`room info` for a person: one aligned line per fact, in words rather than Python
    values (the JSON keeps the wire's)."""
    created = info.get("created_at_ms")
    facts = [
        ("room", info["id"] + (f" ({info['name']})" if info.get("name") else "")),
        ("history", f"persisted in stream {info['stream']}" if info.get("stream") else "none (ephemeral)"),
        ("encryption", f"end to end, key epoch {info['key_epoch']}" if info["encrypted"] else "none"),
        ("subject", info["subject"]),
        ("owner", info["owner"]),
        ("members", str(info["members"])),
        ("your role", info.get("role") or "none"),
    ]
    if created:
        when = datetime.fromtimestamp(created / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        facts.append(("created", when))
    width = max(len(label) for label, _ in facts)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in facts)


async def _members(peer: Peer, args: argparse.Namespace) -> None:
    reply = await peer.control.members(args.room)
    emit(args, reply, "\n".join(f"{m['id']}  {m['role']}" for m in reply["members"]))


async def _add(peer: Peer, args: argparse.Namespace) -> None:
    reply = await peer.add_member(args.room, args.member, "owner" if args.owner else "member")
    emit(args, reply, f"added {args.member} to {args.room} (key epoch {reply['key_epoch']})")


async def _remove(peer: Peer, args: argparse.Namespace) -> None:
    reply = await peer.remove_member(args.room, args.member)
    emit(args, reply, f"removed {args.member} from {args.room} (key epoch {reply['key_epoch']})")


async def _rotate(peer: Peer, args: argparse.Namespace) -> None:
    reply = await peer.rotate_key(args.room)
    emit(args, reply, f"{args.room}: key epoch {reply['key_epoch']}")


async def _delete(peer: Peer, args: argparse.Namespace) -> None:
    reply = await peer.control.delete_room(args.room)
    emit(args, reply, f"deleted {reply['deleted']}")
