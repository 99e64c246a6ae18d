"""What every peer command shares: where NATS is, who we are, and connecting as that.

Each command does one thing through a `Peer` and returns an exit code; what goes wrong
(no identity, NATS unreachable, a service error, a key that does not open) is raised and
told in one line by `output.report`, never as a traceback. A Ctrl-C is exit 130 in every
state of the connection: connecting, connected, or reconnecting while NATS restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
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
from .replaywait import PatientControl
from .target import Setting, Target, resolve

log = logging.getLogger(__name__)


def default_identity_path() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "unibus" / "identity.seed"


def add_identity_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--identity",
        help="nkey seed file (UNIBUS_IDENTITY, --nkey, NATS_NKEY, the context's nkey; "
        f"default {default_identity_path()})",
    )


def add_peer_options(parser: argparse.ArgumentParser) -> None:
    add_identity_option(parser)
    parser.add_argument(
        "--prefix",
        default=os.environ.get("UNIBUS_API_PREFIX") or CONTROL_PREFIX,
        help="control subject prefix (UNIBUS_API_PREFIX)",
    )


def target(args: argparse.Namespace) -> Target:
    """This command's NATS target; the identity is its nkey (`--identity` outranks all)."""
    return resolve(args, unibus_nkey="UNIBUS_IDENTITY")


def identity_path(args: argparse.Namespace, where: Target | None = None) -> Setting:
    if args.identity:
        return Setting(args.identity, "--identity")
    nkey = (where or target(args)).nkey
    return nkey or Setting(str(default_identity_path()), "default")


def load_identity(args: argparse.Namespace, where: Target | None = None) -> Identity:
    path = identity_path(args, where)
    try:
        return Identity.load(path.value)
    except FileNotFoundError:
        hint = " (run `unibus keygen`)" if path.source in ("default", "UNIBUS_IDENTITY", "--identity") else ""
        raise CliError(f"no identity at {path.value} ({path.source}){hint}", EXIT_USAGE) from None
    except (InvalidKey, OSError) as exc:
        raise CliError(f"cannot use identity {path.value} ({path.source}): {exc}", EXIT_USAGE) from None


def run_peer(args: argparse.Namespace, action: Callable[[Peer], Awaitable[int]]) -> int:
    """Connect as the identity, run `action` with a `Peer`, and close."""

    async def with_peer(nc: Client, where: Target) -> int:
        identity = load_identity(args, where)
        peer = Peer(nc, identity, args.prefix)
        # After a restore, requests wait out replay protection within --timeout.
        peer.control = PatientControl(nc, identity, args.prefix, where.timeout_s)
        return await action(peer)

    return connected(args, with_peer)


def connected(
    args: argparse.Namespace,
    action: Callable[[Client, Target], Awaitable[int]],
    throwaway: bool = False,
) -> int:
    """Connect as the identity (with `throwaway`, as a fresh key when there is none),
    run `action`, and close."""
    where = target(args)

    async def go() -> int:
        task = asyncio.current_task()
        try:
            try:
                identity = load_identity(args, where)
            except CliError:
                if not throwaway:
                    raise
                identity = Identity.generate()
            nc = await _connect(where, identity)
            try:
                return await action(nc, where)
            finally:
                await release(nc)
        except Exception:
            # Ctrl-C cancelled this task: whatever nats-py raised on the way out (a
            # connection error, "reconnecting" from a drain) is not the story; the
            # interrupt is, and asyncio.run turns this cancellation back into it (130).
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from None
            raise

    return asyncio.run(go())


async def release(nc: Client) -> None:
    """Drain a connected client (what was published is delivered first); close one that
    is reconnecting or already gone, where a drain would raise instead of ending."""
    if nc.is_connected:
        try:
            await nc.drain()
            return
        except (nats.errors.Error, OSError, TimeoutError):
            pass
    await nc.close()


async def _connect(where: Target, identity: Identity) -> Client:
    """Connected as the identity itself: under the trust boundary that is what decides
    which rooms this connection may publish and subscribe to."""
    url = where.url_or_default()
    log.debug("connecting to %s as %s", where.describe(), identity.public_key)
    try:
        # The peer library's connection: a `tail` lives through cuts, JWT expiries and
        # grants; a first connect that fails is reported at once.
        return await connect(
            url.value,
            identity,
            name="unibus-cli",
            inbox=where.inbox_prefix,
            creds=where.creds.value if where.creds else None,
            connect_timeout=where.timeout_s,
            **where.connect_options(),
        )
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        raise CliError(
            f"cannot reach NATS at {url.value} ({url.source}): {exc or type(exc).__name__}"
        ) from None
