"""`unibus serve`: the control plane, on an embedded nats-server unless given a NATS URL."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..callout.keys import MissingKeys
from ..config import AuthMode, CannotListen, Config, parse_listen
from ..errors import StartRefused
from ..natsserver import ServerExited
from .extras import require_extras
from .lifecycle import run_until_signalled
from .output import EXIT_FAILED, EXIT_USAGE, CliError, emit

if TYPE_CHECKING:  # the service extra: `run` imports it once it knows it is installed
    from ..runner import Running


LISTEN_SETTINGS = {"HTTP shim": "UNIBUS_HTTP_LISTEN (--http)", "metrics endpoint": "UNIBUS_METRICS_LISTEN"}


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
    serve.add_argument(
        "--websocket-port", type=int, help="embedded server's websocket port (UNIBUS_WEBSOCKET_PORT)"
    )
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
            websocket_port=args.websocket_port,
            http_listen=args.http,
            keys_dir=args.keys_dir,
        )
        for listen in (config.http_listen, config.metrics_listen):
            if listen is not None:
                parse_listen(listen)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    require_extras("unibus serve", *(("service", "shim") if config.http_listen else ("service",)))
    # The `service` extra (and `shim` for --http): imported only once they are known present.
    from ..runner import serve_forever

    try:
        return run_until_signalled(lambda stop: serve_forever(config, stop, lambda run: announce(args, run)))
    except CannotListen as exc:
        raise CliError(f"{exc.strerror}; {LISTEN_SETTINGS[exc.what]} moves it", EXIT_FAILED) from None
    except MissingKeys as exc:
        raise CliError(f"UNIBUS_KEYS_DIR (--keys-dir): {exc}", EXIT_USAGE) from None
    except StartRefused as exc:
        raise CliError(f"cannot start: {exc}", EXIT_FAILED) from None
    except ServerExited as exc:
        raise CliError(
            f"the embedded nats-server did not start: {exc.cause}. Another `unibus serve`, or "
            "another server, may hold its ports: --port/UNIBUS_EMBEDDED_PORT and "
            "--websocket-port/UNIBUS_WEBSOCKET_PORT move them, --nats-url joins a running NATS "
            f"(log: {exc.log_path})",
            EXIT_FAILED,
        ) from None


def announce(args: argparse.Namespace, run: Running) -> None:
    """What is listening, under which rules, and what to try next."""
    config = run.config
    boundary = run.plane.links.keys is not None
    ready = {
        "ready": True,
        "nats_url": run.nats_url,
        "websocket_url": run.websocket_url,
        "http_url": run.http_url,
        "metrics_url": run.plane.metrics_url,
        "auth_mode": config.auth_mode.value,
        "trust_boundary": boundary,
        "embedded": run.server is not None,
    }
    rules = (
        "trust boundary on: peers connect with their own nkey (docs/security.md)"
        if boundary
        else "no trust boundary: NATS's own config decides who may touch what (docs/security.md)"
    )
    lines = [
        f"unibus control plane ready: nats {run.nats_url}",
        f"auth {config.auth_mode.value}; {rules}",
    ]
    for label, url in (
        ("websocket for browsers", run.websocket_url),
        ("http shim", run.http_url),
        ("metrics", run.plane.metrics_url),
    ):
        if url:
            lines.append(f"{label}: {url}")
    lines.append(
        "next, in another terminal: `unibus keygen`, then `unibus room create lobby` "
        '(README.md, "Try it with the unibus CLI")'
    )
    emit(args, ready, "\n".join(lines))
