"""`unibus serve`: the control plane, on an embedded nats-server unless given a NATS URL."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import AuthMode, Config, parse_listen
from .extras import refuse_without
from .lifecycle import run_until_signalled


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the control plane (embedded nats-server without --nats-url)"
    )
    serve.add_argument(
        "--nats-url", help="join this NATS instead of starting an embedded one (UNIBUS_NATS_URL)"
    )
    serve.add_argument("--data-dir", help="embedded JetStream store and SQLite fallback (UNIBUS_DATA_DIR)")
    serve.add_argument(
        "--auth", choices=[m.value for m in AuthMode], help="signature policy (UNIBUS_AUTH_MODE)"
    )
    serve.add_argument("--port", type=int, help="embedded server's client port (UNIBUS_EMBEDDED_PORT)")
    serve.add_argument("--http", help="also run the HTTP shim on host:port (UNIBUS_HTTP_LISTEN)")
    serve.add_argument(
        "--keys-dir", help="the trust boundary's seeds, from `unibus boundary init` (UNIBUS_KEYS_DIR)"
    )
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = Config.from_env(
            nats_url=args.nats_url,
            data_dir=args.data_dir,
            auth_mode=args.auth,
            embedded_port=args.port,
            http_listen=args.http,
            keys_dir=args.keys_dir,
        )
        for listen in (config.http_listen, config.metrics_listen):
            if listen is not None:
                parse_listen(listen)
    except ValueError as exc:
        print(f"unibus: {exc}", file=sys.stderr)
        return 2
    refused = refuse_without("unibus serve", *(("service", "shim") if config.http_listen else ("service",)))
    if refused is not None:
        return refused
    # The `service` extra (and `shim` for --http): imported only once they are known present.
    from ..runner import serve_forever

    return run_until_signalled(lambda stop: serve_forever(config, stop))
