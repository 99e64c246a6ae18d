"""What every peer command shares: where NATS is, who we are, and connecting as that.

Each command does one thing through a `Peer` and returns an exit code; what goes wrong
(no identity, NATS unreachable, a service error, a key that does not open) is raised and
told in one line by `output.report`, never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import nats.errors
from nats.aio.client import Client

from ..client import Peer, connect
from ..identity import Identity, InvalidKey
from ..wire.names import CONTROL_PREFIX
from .output import EXIT_USAGE, CliError

DEFAULT_URL = "nats://127.0.0.1:4222"


def default_identity_path() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "unibus" / "identity.seed"


def add_identity_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--identity",
        default=os.environ.get("UNIBUS_IDENTITY") or str(default_identity_path()),
        help="nkey seed file (UNIBUS_IDENTITY; default %(default)s)",
    )


def add_peer_options(parser: argparse.ArgumentParser) -> None:
    add_identity_option(parser)
    parser.add_argument(
        "--nats-url",
        default=os.environ.get("UNIBUS_NATS_URL") or DEFAULT_URL,
        help="NATS to connect to (UNIBUS_NATS_URL; default %(default)s)",
    )
    parser.add_argument("--creds", default=os.environ.get("UNIBUS_NATS_CREDS"), help="NATS credentials file")
    parser.add_argument(
        "--prefix",
        default=os.environ.get("UNIBUS_API_PREFIX") or CONTROL_PREFIX,
        help="control subject prefix (UNIBUS_API_PREFIX)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for NATS and the service"
    )


def load_identity(args: argparse.Namespace) -> Identity:
    path = Path(args.identity)
    try:
        return Identity.load(path)
    except FileNotFoundError:
        raise CliError(f"no identity at {path} (run `unibus keygen`)", EXIT_USAGE) from None
    except (InvalidKey, OSError) as exc:
        raise CliError(f"cannot use identity {path}: {exc}", EXIT_USAGE) from None


def run_peer(args: argparse.Namespace, action: Callable[[Peer], Awaitable[int]]) -> int:
    """Connect as the identity, run `action` with a `Peer`, and close."""

    async def with_peer(nc: Client) -> int:
        peer = Peer(nc, load_identity(args), args.prefix)
        peer.control.timeout_s = args.timeout
        return await action(peer)

    return connected(args, with_peer)


def connected(
    args: argparse.Namespace, action: Callable[[Client], Awaitable[int]], throwaway: bool = False
) -> int:
    """Connect as the identity (with `throwaway`, as a fresh key when there is none),
    run `action`, and drain."""

    async def go() -> int:
        try:
            identity = load_identity(args)
        except CliError:
            if not throwaway:
                raise
            identity = Identity.generate()
        nc = await _connect(args, identity)
        try:
            return await action(nc)
        finally:
            await nc.drain()

    return asyncio.run(go())


async def _connect(args: argparse.Namespace, identity: Identity) -> Client:
    """Connected as the identity itself: under the trust boundary that is what decides
    which rooms this connection may publish and subscribe to."""

    try:
        # The peer library's connection: a `tail` lives through cuts, JWT expiries and
        # grants; a first connect that fails is reported at once.
        return await connect(
            args.nats_url, identity, name="unibus-cli", creds=args.creds, connect_timeout=args.timeout
        )
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        raise CliError(f"cannot reach NATS at {args.nats_url}: {exc or type(exc).__name__}") from None
