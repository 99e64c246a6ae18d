"""`unibus backup DIR` and `unibus restore DIR`: the deployment's JetStream state, online.

Both connect as the control plane's own JetStream user (`service.nk` from
`UNIBUS_KEYS_DIR`, or the embedded server's `<data dir>/keys`), the one user the boundary
lets manage streams: no other user gains a permission for them. Without the boundary they
connect as `UNIBUS_NATS_CREDS` (or anonymously) like the service does.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client

from ..callout.keys import boundary_keys
from ..config import Config
from ..operations.backup import BackupError, Saved, backup, new_directory, restore
from ..wire import connection
from ..wire.names import INBOXES, ROOM_STREAM_PREFIX
from .output import CliError, emit


def register(commands: Any) -> None:
    for name, run, helptext in (
        ("backup", run_backup, "save the room bucket and every room stream into DIR, online"),
        ("restore", run_restore, "recreate them from DIR in a JetStream that has none of them"),
    ):
        parser = commands.add_parser(name, help=helptext)
        parser.add_argument("dir", type=Path, help="backup directory")
        parser.add_argument("--nats-url", help="NATS to connect to (UNIBUS_NATS_URL)")
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds per JetStream request")
        if name == "restore":
            parser.add_argument("--replicas", type=int, help="replication of every restored stream")
        parser.set_defaults(func=run)


Work = Callable[[Client, Config], Awaitable[list[Saved]]]


def run_backup(args: argparse.Namespace) -> int:
    async def work(nc: Client, config: Config) -> list[Saved]:
        new_directory(args.dir)
        return await backup(nc, args.dir, config.api_prefix, args.timeout)

    return _run(args, "saved", work)


def run_restore(args: argparse.Namespace) -> int:
    async def work(nc: Client, config: Config) -> list[Saved]:
        return await restore(nc, args.dir, config, args.timeout, args.replicas)

    return _run(args, "restored", work)


def _run(args: argparse.Namespace, verb: str, work: Work) -> int:
    started = time.monotonic()
    try:
        config = Config.from_env(nats_url=args.nats_url)
        saved = asyncio.run(_connected(config, args.timeout, work))
    except (BackupError, ValueError, OSError, nats.errors.Error) as exc:
        raise CliError(f"{args.command}: {exc}") from None
    rooms = [entry for entry in saved if entry.stream.startswith(ROOM_STREAM_PREFIX)]
    frames = sum(entry.messages for entry in rooms)
    size = sum(entry.bytes for entry in saved)
    seconds = time.monotonic() - started
    done = {"dir": str(args.dir), "rooms": len(rooms), "frames": frames, "bytes": size, "seconds": seconds}
    human = f"{verb} the room bucket and {len(rooms)} room streams ({frames} frames, {size} bytes)"
    emit(args, {verb: done}, f"{human} in {seconds:.2f} s: {args.dir}")
    return 0


async def _connected(config: Config, timeout_s: float, work: Work) -> list[Saved]:
    keys = boundary_keys(config)
    options = connection.options(
        config.reachable_nats_url,
        name=f"{config.service_name}-backup",
        identity=keys.users["service"] if keys else None,
        inbox=INBOXES["service"] if keys else None,
        creds=config.nats_creds,
        connect_timeout=timeout_s,
    )
    nc = await connection.connect_once(options)
    try:
        return await work(nc, config)
    finally:
        await nc.close()
