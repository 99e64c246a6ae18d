"""`unibus backup DIR` and `unibus restore DIR`: the deployment's JetStream state, online.

Both connect as the control plane's own JetStream user (`service.nk` from
`UNIBUS_KEYS_DIR`, or the embedded server's `<data dir>/keys`), the one user the boundary
lets manage streams: no other user gains a permission for them. Without the boundary they
connect as `UNIBUS_NATS_CREDS` (or anonymously) like the service does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
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
from .target import Target, resolve

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    for name, run, helptext in (
        ("backup", run_backup, "save the room bucket and every room stream into DIR, online"),
        ("restore", run_restore, "recreate them from DIR in a JetStream that has none of them"),
    ):
        parser = commands.add_parser(name, help=helptext)
        parser.add_argument("dir", type=Path, help="backup directory")
        if name == "restore":
            parser.add_argument("--replicas", type=int, help="replication of every restored stream")
        parser.set_defaults(func=run)


Work = Callable[[Client, Config, float], Awaitable[list[Saved]]]


def run_backup(args: argparse.Namespace) -> int:
    async def work(nc: Client, config: Config, timeout_s: float) -> list[Saved]:
        new_directory(args.dir)
        return await backup(nc, args.dir, config.api_prefix, timeout_s)

    return _run(args, "saved", work)


def run_restore(args: argparse.Namespace) -> int:
    async def work(nc: Client, config: Config, timeout_s: float) -> list[Saved]:
        return await restore(nc, args.dir, config, timeout_s, args.replicas)

    return _run(args, "restored", work)


def _run(args: argparse.Namespace, verb: str, work: Work) -> int:
    started = time.monotonic()
    # `--timeout` bounds each JetStream request.
    where = resolve(args, client=False)  # beside the service: its settings, not NATS_*
    try:
        config = Config.from_env(**where.config_overrides())
        saved = asyncio.run(_connected(config, where, work))
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


async def _connected(config: Config, where: Target, work: Work) -> list[Saved]:
    keys = boundary_keys(config)
    url = config.reachable_nats_url
    source = where.url.source if where.url else "the embedded server's port, UNIBUS_EMBEDDED_PORT"
    log.debug("connecting to nats %s (from %s)", url, source)
    options = connection.options(
        url,
        name=f"{config.service_name}-backup",
        identity=keys.users["service"] if keys else None,
        inbox=INBOXES["service"] if keys else None,
        creds=config.nats_creds,
        connect_timeout=where.timeout_s,
    )
    try:
        nc = await connection.connect_once(options)
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        raise CliError(f"cannot reach NATS at {url} ({source}): {exc or type(exc).__name__}") from None
    try:
        return await work(nc, config, where.timeout_s)
    finally:
        await nc.close()
