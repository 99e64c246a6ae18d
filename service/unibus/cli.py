"""`unibus`: the one command line entry point."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .config import AuthMode, Config
from .runner import serve_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unibus", description="unibus control plane and peer tools")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the control plane (embedded nats-server without --nats-url)")
    serve.add_argument("--nats-url", help="join this NATS instead of starting an embedded one (UNIBUS_NATS_URL)")
    serve.add_argument("--data-dir", help="embedded JetStream store and SQLite fallback (UNIBUS_DATA_DIR)")
    serve.add_argument("--auth", choices=[m.value for m in AuthMode], help="signature policy (UNIBUS_AUTH_MODE)")
    serve.add_argument("--port", type=int, help="embedded server's client port (UNIBUS_EMBEDDED_PORT)")
    serve.add_argument("--http", help="also run the HTTP shim on host:port (UNIBUS_HTTP_LISTEN)")
    serve.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        try:
            config = Config.from_env(
                nats_url=args.nats_url,
                data_dir=args.data_dir,
                auth_mode=args.auth,
                embedded_port=args.port,
                http_listen=args.http,
            )
        except ValueError as exc:
            print(f"unibus: {exc}", file=sys.stderr)
            return 2
        return _run(config)
    return 2


def _run(config: Config) -> int:
    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_forever(config, stop)

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
