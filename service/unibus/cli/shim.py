"""`unibus shim`: the HTTP shim on its own, in front of control-plane instances on a NATS."""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import replace
from typing import Any

from ..config import CannotListen, Config, parse_listen
from ..identity import Identity, InvalidKey
from .extras import require_extras
from .lifecycle import run_until_signalled
from .output import EXIT_USAGE, CliError, emit
from .target import DEFAULT_URL, resolve

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8000"


def register(commands: Any) -> None:
    shim = commands.add_parser("shim", help="relay HTTP history requests to the control plane over NATS")
    shim.add_argument("--listen", help=f"host:port to serve HTTP on (UNIBUS_HTTP_LISTEN, {DEFAULT_LISTEN})")
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
        # The shim's nkey is its boundary user (shim.nk): UNIBUS_NKEY, then --nkey's NATS_NKEY.
        where = resolve(args, unibus_nkey="UNIBUS_NKEY")
        nkey = where.nkey.value if where.nkey else None
        config = Config.from_env(**where.config_overrides(), http_listen=args.listen, nkey=nkey)
        if config.nats_url is None:  # the local NATS, as every other command
            config = replace(config, nats_url=DEFAULT_URL)
        listen = config.http_listen or DEFAULT_LISTEN
        parse_listen(listen, LISTEN_SETTINGS["HTTP shim"])
        settings = ShimSettings.from_config(config, listen, args.allow_origin)
        if config.metrics_listen:
            parse_listen(config.metrics_listen, LISTEN_SETTINGS["metrics endpoint"])
            settings = replace(settings, metrics_listen=config.metrics_listen)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None

    try:
        identity = Identity.load(config.nkey) if config.nkey else None
    except (OSError, InvalidKey) as exc:
        source = where.nkey.source if where.nkey else ""
        raise CliError(
            f"UNIBUS_NKEY (--nkey): cannot use {config.nkey} (from {source}): {exc}", EXIT_USAGE
        ) from None

    async def relay_until(stop: asyncio.Event) -> None:
        nats_url, creds = config.nats_url, config.nats_creds
        async with serving(settings, nats_url=nats_url, creds=creds, identity=identity) as shim:
            ready = {
                "ready": True,
                "http_url": shim.url,
                "nats_url": nats_url,
                "metrics_url": shim.metrics_url,
            }
            source = where.url.source if where.url else "default"
            emit(args, ready, f"unibus http shim ready: {shim.url} -> nats {nats_url} (from {source})")
            if identity is None:
                log.info("no nkey: connecting without one; under a trust boundary set UNIBUS_NKEY or --nkey")
            await stop.wait()
        log.info("http shim stopped")

    try:
        return run_until_signalled(relay_until)
    except CannotListen as exc:
        raise CliError(f"{exc.strerror}; {LISTEN_SETTINGS[exc.what]} moves it") from None


LISTEN_SETTINGS = {"HTTP shim": "UNIBUS_HTTP_LISTEN (--listen)", "metrics endpoint": "UNIBUS_METRICS_LISTEN"}
