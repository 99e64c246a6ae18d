"""`unibus shim`: the HTTP shim on its own, in front of control-plane instances on a NATS."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from typing import Any

from ..config import CannotListen, Config, parse_listen
from ..identity import Identity, InvalidKey
from .extras import require_extras
from .lifecycle import run_until_signalled
from .output import EXIT_USAGE, CliError, emit
from .session import DEFAULT_URL

DEFAULT_LISTEN = "127.0.0.1:8080"


def register(commands: Any) -> None:
    shim = commands.add_parser("shim", help="relay HTTP history requests to the control plane over NATS")
    shim.add_argument(
        "--nats-url", help=f"NATS where the control plane answers (UNIBUS_NATS_URL; default {DEFAULT_URL})"
    )
    shim.add_argument("--listen", help=f"host:port to serve HTTP on (UNIBUS_HTTP_LISTEN, {DEFAULT_LISTEN})")
    shim.add_argument("--nkey", help="seed file of the shim's NATS user, shim.nk (UNIBUS_NKEY)")
    shim.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="browser origin granted CORS, repeatable; `*` for any (UNIBUS_CORS_ORIGINS, comma-separated)",
    )
    shim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_extras("unibus shim", "shim")
    # aiohttp is the optional `shim` extra: only this command needs it.
    from ..shim import ShimSettings, serving

    try:
        config = Config.from_env(nats_url=args.nats_url, http_listen=args.listen, nkey=args.nkey)
        if config.nats_url is None:  # the local NATS, as every other command
            config = replace(config, nats_url=DEFAULT_URL)
        settings = ShimSettings.from_config(config, config.http_listen or DEFAULT_LISTEN, args.allow_origin)
        if config.metrics_listen:
            parse_listen(config.metrics_listen)
            settings = replace(settings, metrics_listen=config.metrics_listen)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None

    try:
        identity = Identity.load(config.nkey) if config.nkey else None
    except (OSError, InvalidKey) as exc:
        raise CliError(f"UNIBUS_NKEY (--nkey): cannot use {config.nkey}: {exc}", EXIT_USAGE) from None

    async def relay_until(stop: asyncio.Event) -> None:
        nats_url, creds = config.nats_url, config.nats_creds
        async with serving(settings, nats_url=nats_url, creds=creds, identity=identity) as shim:
            ready = {
                "ready": True,
                "http_url": shim.url,
                "nats_url": nats_url,
                "metrics_url": shim.metrics_url,
            }
            emit(args, ready, f"unibus http shim ready: {shim.url} -> nats {nats_url}")
            await stop.wait()

    try:
        return run_until_signalled(relay_until)
    except CannotListen as exc:
        raise CliError(f"{exc.strerror}; {LISTEN_SETTINGS[exc.what]} moves it") from None


LISTEN_SETTINGS = {"HTTP shim": "UNIBUS_HTTP_LISTEN (--listen)", "metrics endpoint": "UNIBUS_METRICS_LISTEN"}
