"""What a backend hands a test suite, and the readiness wait every backend shares."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from ..config import Config

# `unibus.cli` is imported only inside the functions below: this module loads with the
# pytest plugin in every run where unibus is installed, and the CLI pulls in the shim's
# aiohttp, which a suite that never asks for `unibus_stack` need not have.


@dataclass(frozen=True)
class Stack:
    """Where a started stack answers. URLs are reachable from the test process."""

    backend: str
    nats_url: str
    """NATS with JetStream; the control plane answers on `$UNIBUS.CTL.rooms.…` through it."""
    websocket_url: str | None
    """The same NATS for browsers (plain ws)."""
    shim_url: str | None
    """The HTTP shim's base URL, when the installed unibus has a shim."""


class BackendUnavailable(RuntimeError):
    """This backend cannot run here; the message says why (shown as a pytest skip reason)."""


class Backend(Protocol):
    name: str

    def start(self) -> Stack: ...

    def stop(self) -> None: ...


@contextlib.contextmanager
def started(backend: Backend) -> Iterator[Stack]:
    """Start, yield the stack, and always stop (a failed start cleans up what it began)."""
    try:
        yield backend.start()
    finally:
        backend.stop()


def shim_available() -> bool:
    """True when this unibus has the `unibus shim` command (the module cli/shim.py)."""
    from ..cli import COMMAND_MODULES

    return any(module.__name__.endswith(".shim") for module in COMMAND_MODULES)


def service_name(env: Mapping[str, str]) -> str:
    return Config.from_env(dict(env)).service_name


def probe_service(nats_url: str, name: str, timeout_s: float = 2.0) -> None:
    """Raise Unhealthy unless the service answers over NATS. Runs its own event loop in a
    worker thread, so it is callable from async fixtures and tests too."""
    from ..cli.health import ping_service

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, ping_service(nats_url, name, timeout_s)).result()


def probe_http(url: str, timeout_s: float = 2.0) -> None:
    from ..cli.health import check_http

    check_http(url, timeout_s)


Exited = Callable[[], str | None]
"""None while a component runs; its exit reason and log tail once it has died."""


def wait_ready(what: str, probe: Callable[[], None], exited: Exited, timeout_s: float) -> None:
    """Poll `probe` until it passes; fail fast with the component's own words if it died."""
    from ..cli.health import Unhealthy

    deadline = time.monotonic() + timeout_s
    last = "not probed yet"
    while time.monotonic() < deadline:
        try:
            probe()
            return
        except Unhealthy as exc:
            last = str(exc)
        death = exited()
        if death is not None:
            raise RuntimeError(f"{what} exited before it was ready:\n{death}")
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready within {timeout_s}s: {last}")


def wait_service(what: str, nats_url: str, env: Mapping[str, str], exited: Exited, timeout_s: float) -> None:
    """Ready as the image's health check means it: the service answers $SRV.PING."""
    name = service_name(env)
    wait_ready(what, lambda: probe_service(nats_url, name), exited, timeout_s)


def wait_shim(what: str, shim_url: str, exited: Exited, timeout_s: float) -> None:
    """Ready when the shim's /healthz is 200: NATS connected and the service answering."""
    wait_ready(what, lambda: probe_http(f"{shim_url}/healthz"), exited, timeout_s)
