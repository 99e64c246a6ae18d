"""One builder for every NATS connection this package opens: the service's three, the
shim's, the CLI's and the health probe's, so identity, inbox and reconnect behaviour are
decided in one place.

Under the trust boundary (docs/security.md) a connection authenticates with an nkey and
receives replies under an inbox prefix bound to that key; nats-server refuses it any
other inbox. Clients reconnect by themselves after the control plane cuts them for a
change of rooms, so reconnecting is on for everything that lives longer than a request,
and that includes the expiry of a connection's user JWT (`RenewingClient`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client

from ..identity import Identity, inbox_prefix

log = logging.getLogger(__name__)

AUTHENTICATION_EXPIRED = "authentication expired"
"""What nats-server's `-ERR` says when a connection's user (or account) JWT expires."""


class RenewingClient(Client):
    """A nats-py client that reconnects when its user JWT expires, as nats.go does.

    The callout's JWTs expire (`UNIBUS_CALLOUT_TTL_S`); nats-server then sends
    `-ERR 'User Authentication Expired'` and closes the connection. nats-py (2.16) treats
    every `-ERR` but a permissions violation as fatal and closes the client for good, so
    without this every long-lived peer would die one TTL after connecting. Here that one
    error is handled like a lost connection: nats-py reconnects, with its subscriptions,
    and the callout issues a JWT for the identity's current rooms. nats-py has no public
    hook for a server error, so this overrides the one method that reads them;
    tests/test_follow.py's expiry tests fail if a nats-py upgrade changes it."""

    async def _process_err(self, err_msg: str) -> None:
        if AUTHENTICATION_EXPIRED in err_msg.lower() and self.options["allow_reconnect"]:
            await self._process_op_err(nats.errors.Error(f"nats: {err_msg.strip(chr(39))}"))
            return
        await super()._process_err(err_msg)


def servers(url: str) -> list[str]:
    """`nats://a:4222,nats://b:4222` → the seed list."""
    return [u.strip() for u in url.split(",") if u.strip()]


def options(
    url: str,
    *,
    name: str,
    identity: Identity | None = None,
    inbox: str | None = None,
    creds: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """`nats.connect` keyword arguments. `identity` signs the server's nonce; its inbox is
    `_INBOX.<key>` unless `inbox` names another (the static users')."""
    result: dict[str, Any] = {
        "servers": servers(url),
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
    }
    if identity is not None:
        result["nkeys_seed_str"] = identity.seed
        result["inbox_prefix"] = inbox or inbox_prefix(identity.public_key)
    elif inbox is not None:
        result["inbox_prefix"] = inbox
    if creds:
        result["user_credentials"] = creds
    result.update(extra)
    return result


async def connect_once(options: dict[str, Any]) -> Client:
    """Connect, raising at once if the first attempt is refused (a command or a probe
    reports that in one line instead of retrying); once connected, reconnect for ever.
    Without an `error_cb` in `options`, nats-py's own log of each error is left out: the
    failure that matters is the one raised to the caller."""
    # nats-py retries a first connect for ever when max_reconnect_attempts is -1.
    first = {"error_cb": _quiet, **options, "allow_reconnect": False, "max_reconnect_attempts": 1}
    nc = RenewingClient()
    await nc.connect(**first)
    _allow_reconnect(nc, options.get("max_reconnect_attempts", -1))
    return nc


def _allow_reconnect(nc: Client, attempts: int) -> None:
    """Turn reconnecting on for a connection made without it. nats-py reads these options
    afresh at each disconnect but offers no setter, so its `options` dict is changed here
    and nowhere else."""
    nc.options["allow_reconnect"] = True
    nc.options["max_reconnect_attempts"] = attempts


def server_info(nc: Client) -> dict[str, Any]:
    """The INFO the server sent on connect (cluster, JetStream, limits). nats-py keeps it
    private (`_server_info`) and exposes a few fields only; this is the one place that
    reads it."""
    info: dict[str, Any] = nc._server_info
    return info


async def _quiet(_: Exception) -> None:
    """An error callback that says nothing (nats-py's default logs a traceback)."""


async def connect_until_up(options: dict[str, Any]) -> Client:
    """Connect, retrying every `reconnect_time_wait` until NATS first answers (nats-py
    tells `error_cb` each attempt's cause); once connected, it reconnects for ever.

    Not nats-py's own retry loop for a first connect: a cancel that lands inside an
    attempt comes out of nats-py as a connection error, and its loop then goes on for
    ever, so a process whose NATS is away could never be stopped. Here the task's
    pending cancellation is honoured after each attempt."""
    task = asyncio.current_task()
    while True:
        try:
            return await connect_once(options)
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            # The attempt's cause already went to `error_cb`, from nats-py itself.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from exc
        await asyncio.sleep(options.get("reconnect_time_wait", 2.0))


def is_authorization_failure(exc: BaseException) -> bool:
    """nats-server refused the credentials (an `-ERR 'Authorization Violation'`, or the
    callout's refusal): a setting to fix, never something retrying cures."""
    return "authorization" in (str(exc) or "").lower()


class ErrorLog:
    """An `error_cb` that says what went wrong and which setting to check, at WARNING.

    nats-py reports every failed attempt, four a second while NATS is away (a process
    keeps trying until it comes: orchestrators start things in any order), so the first
    of a run of equal errors is logged and repeats only every `every_s`, counted. An
    authorization failure names `auth_setting`, an unreachable server `url_setting`:
    the user reads what to change, not only that something failed. `last` keeps the
    latest error for a health report."""

    def __init__(self, who: str, url_setting: str, auth_setting: str, every_s: float = 10.0) -> None:
        self.who = who
        self.url_setting = url_setting
        self.auth_setting = auth_setting
        self.every_s = every_s
        self.last: str | None = None
        self._kind: str | None = None
        self.logged_at = 0.0
        self.repeats = 0

    def explain(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        if is_authorization_failure(exc):
            return f"{text}: NATS refused the {self.who}'s credentials; check {self.auth_setting}"
        if isinstance(exc, OSError):  # NATS unreachable: retried until it answers
            return f"{text} (retrying; check {self.url_setting})"
        return text

    async def log(self, exc: Exception) -> None:
        # A bound coroutine function: nats-py refuses callable objects as callbacks.
        text = self.explain(exc)
        # Errors alike but for a quoted subject are one kind: a caller who aims replies at
        # subjects this user may not publish to gets a permissions violation per request,
        # each naming another subject, and must not get a log line per request.
        kind = _QUOTED.sub('"…"', text)
        now = time.monotonic()
        self.last = text
        if kind == self._kind and now - self.logged_at < self.every_s:
            self.repeats += 1
            return
        if kind == self._kind:
            log.warning("nats: %s (%d more times)", text, self.repeats)
        else:
            log.warning("nats: %s", text)
        self._kind, self.logged_at, self.repeats = kind, now, 0


_QUOTED = re.compile(r'"[^"]*"')
