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
from .target import resolve

if TYPE_CHECKING:  # the service extra: `run` imports it once it knows it is installed
    from ..natsserver import NatsServer
    from ..runner import Running


LISTEN_SETTINGS = {"HTTP shim": "UNIBUS_HTTP_LISTEN (--http)", "metrics endpoint": "UNIBUS_METRICS_LISTEN"}


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the control plane (embedded nats-server without --nats-url)"
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
        "--nats-only",
        action="store_true",
        help="run the embedded nats-server alone, without the control plane (for `unibus restore`)",
    )
    serve.add_argument(
        "--keys-dir", help="the trust boundary's seeds, from `unibus boundary init` (UNIBUS_KEYS_DIR)"
    )
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        # -s/--server (--nats-url), --context or UNIBUS_NATS_URL join that NATS; without
        # them the embedded server starts, whatever NATS_* a natscli user has set.
        where = resolve(args, client=False)
        config = Config.from_env(
            **where.config_overrides(),
            data_dir=args.data_dir,
            auth_mode=args.auth,
            embedded_port=args.port,
            websocket_port=args.websocket_port,
            http_listen=args.http,
            keys_dir=args.keys_dir,
        )
        for setting, listen in (
            (LISTEN_SETTINGS["HTTP shim"], config.http_listen),
            (LISTEN_SETTINGS["metrics endpoint"], config.metrics_listen),
        ):
            if listen is not None:
                parse_listen(listen, setting)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.nats_only and config.nats_url is not None:
        raise CliError(
            f"--nats-only runs the embedded nats-server, but {where.url.source if where.url else ''} "
            f"names a NATS to join ({config.nats_url})",
            EXIT_USAGE,
        )
    require_extras("unibus serve", *(("service", "shim") if config.http_listen else ("service",)))
    # The `service` extra (and `shim` for --http): imported only once they are known present.
    from ..runner import serve_forever, serve_nats_only

    source = where.url.source if where.url else None
    try:
        if args.nats_only:
            return run_until_signalled(
                lambda stop: serve_nats_only(config, stop, lambda server: announce_nats_only(args, server))
            )
        return run_until_signalled(
            lambda stop: serve_forever(config, stop, lambda run: announce(args, run, source))
        )
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


def announce_nats_only(args: argparse.Namespace, server: NatsServer) -> None:
    """The embedded server alone: what it is for, and what comes next."""
    ready = {
        "ready": True,
        "nats_url": server.url,
        "websocket_url": server.spec.websocket_url,
        "monitor_url": server.spec.monitor_url,
        "control_plane": False,
    }
    lines = [
        f"embedded nats-server ready (no control plane): nats {server.url}",
        "for a restore, in another terminal: `unibus restore DIR`; then stop this and run "
        "`unibus serve` (docs/operations.md)",
    ]
    emit(args, ready, "\n".join(lines))


def announce(args: argparse.Namespace, run: Running, source: str | None = None) -> None:
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
        "monitor_url": run.server.spec.monitor_url if run.server else None,
    }
    if not boundary:
        rules = "no trust boundary: NATS's own config decides who may touch what (docs/security.md)"
    elif config.auth_mode is AuthMode.ENFORCE:
        rules = "trust boundary on: peers connect with their own nkey (docs/security.md)"
    else:  # the callout admits connections without an nkey (docs/security.md, "Auth modes")
        rules = (
            "trust boundary on, relaxed for demos: connections without an nkey are admitted to "
            "every room subject (never JetStream) and unsigned requests pass (docs/security.md)"
        )
    joined = f" (from {source})" if run.server is None and source else ""
    lines = [
        f"unibus control plane ready: nats {run.nats_url}{joined}",
        f"auth {config.auth_mode.value}; {rules}",
    ]
    for label, url in (
        ("websocket for browsers", run.websocket_url),
        ("http shim", run.http_url),
        ("metrics", run.plane.metrics_url),
        ("nats-server monitoring", run.server.spec.monitor_url if run.server else None),
    ):
        if url:
            lines.append(f"{label}: {url}")
    lines.append(
        "next, in another terminal: `unibus keygen`, then `unibus room create lobby` "
        '(README.md, "Try it with the unibus CLI")'
    )
    emit(args, ready, "\n".join(lines))
