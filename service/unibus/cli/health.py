"""`unibus health`: the exec probe of the container image (Docker HEALTHCHECK, k8s readiness).

The service listens on nothing but NATS, so "healthy" means what a peer needs: NATS is
reachable and an instance of the service answers `$SRV.PING.<name>`. A container that runs
the HTTP shim instead (UNIBUS_HTTP_LISTEN set) is asked its own `/healthz`, which applies
the same rule from the shim's side. Any NATS instance answering, rather than this very
process, is deliberate: the queue group makes every instance interchangeable, and a dead
process is already caught by the container exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import urllib.error
import urllib.request
from typing import Any

import nats
import nats.errors

from ..config import Config
from ..identity import Identity
from ..wire import connection
from ..wire.names import ping_subject
from .output import CliError, emit
from .target import resolve

log = logging.getLogger(__name__)


class Unhealthy(Exception):
    """The probe's verdict, with the reason an operator reads in `docker inspect`."""


def register(commands: Any) -> None:
    health = commands.add_parser(
        "health", help="exit 0 when the service answers over NATS (or the shim's /healthz is 200)"
    )
    health.add_argument("--url", help="check this HTTP URL for a 200 instead (e.g. a shim's /healthz)")
    health.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        where = resolve(args, default_timeout_s=3.0, client=False)  # beside the service, as backup
        config = Config.from_env(**where.config_overrides())
        url = args.url or _shim_url(config)
        if url is not None:
            check_http(url, where.timeout_s)
            emit(args, {"healthy": True, "url": url}, f"healthy: {url} answered 200")
        else:
            nats_url = config.reachable_nats_url
            source = where.url.source if where.url else "the embedded server's port"
            log.debug("pinging %s on nats %s (from %s)", config.service_name, nats_url, source)
            asyncio.run(ping_service(nats_url, config.service_name, where.timeout_s, config.nats_creds))
            healthy = {"healthy": True, "service": config.service_name, "nats_url": nats_url}
            emit(args, healthy, f"healthy: {config.service_name} answers on {nats_url}")
    except (Unhealthy, ValueError) as exc:
        raise CliError(f"unhealthy: {exc}") from None
    return 0


def _shim_url(config: Config) -> str | None:
    """The shim this container runs, reached on loopback whatever address it binds."""
    if not config.http_listen:
        return None
    _, _, port = config.http_listen.rpartition(":")
    return f"http://127.0.0.1:{port}/healthz"


async def ping_service(nats_url: str, service_name: str, timeout_s: float, creds: str | None = None) -> None:
    """Raise Unhealthy unless NATS accepts a connection and one instance answers the ping."""
    # One attempt, quietly: a probe reports a refusal in one line instead of retrying
    # for minutes and logging each try.
    # A throwaway identity: under the trust boundary any nkey may ping, none needs a room.
    options = connection.options(
        nats_url,
        name="unibus-health",
        identity=Identity.generate(),
        creds=creds,
        connect_timeout=timeout_s,
    )
    try:
        nc = await connection.connect_once(options)
    except Exception as exc:  # nats-py raises assorted OSError/timeout/protocol errors here
        reason = str(exc) or type(exc).__name__
        if "authorization" in reason.lower() or isinstance(exc, (TimeoutError, nats.errors.TimeoutError)):
            # Under the trust boundary the callout admits connections: no instance, no entry.
            reason += " (no control plane answering the auth callout?)"
        raise Unhealthy(f"cannot connect to {nats_url}: {reason}") from exc
    try:
        await nc.request(ping_subject(service_name), b"", timeout=timeout_s)
    except nats.errors.NoRespondersError:
        raise Unhealthy(f"no instance of {service_name} is subscribed on {nats_url}") from None
    except nats.errors.TimeoutError:
        raise Unhealthy(f"{service_name} did not answer within {timeout_s}s") from None
    except nats.errors.Error as exc:
        raise Unhealthy(f"pinging {service_name!r}: {exc}") from exc
    finally:
        await nc.close()


def check_http(url: str, timeout_s: float) -> None:
    """Raise Unhealthy unless GET url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise Unhealthy(f"{url}: {exc}") from exc
    if status != 200:
        raise Unhealthy(f"{url} answered {status}")
