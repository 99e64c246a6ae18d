"""How fast one identity creates rooms, counted where every instance sees it.

A creation rate kept in each instance's memory lets a caller multiply it by the number of
instances (the queue group spreads its requests). So the count lives in JetStream: each
creation is one small message on `<api_prefix>.creations.<identity>` in a stream that
forgets it after the rule's window, and a creation is admitted while the identity has
at most the rule's allowance there. The message is published first and counted after, so two
instances admitting the same identity at once see each other's; the one that finds too
many deletes its own message again and answers 429. Contention can therefore refuse
both, never admit one too many.

Only the control plane's own connection may publish there (the trust boundary,
`callout/serverconf.py`); peers cannot fill someone else's count. Without JetStream (the
SQLite fallback, one instance) the same rule is kept in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Protocol

import nats.errors
import nats.js.errors as jserr
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from ..config import Config
from ..errors import too_many
from ..wire import jsapi
from ..wire.jscodes import JSStorageResourcesExceededErr, JSStreamNameExistErr
from ..wire.names import creations_stream_name, creations_subject

log = logging.getLogger(__name__)

BURST = 50
"""Creations one identity may make at once; then `rate` a second on average."""

CREATIONS_MAX_BYTES = 1024 * 1024
"""Reserved for the counts (164 bytes a creation, measured, so some 6,400 a window, where
one JetStream creates about 100 rooms a second); beyond it the oldest are dropped, which
only ever lets a creator create sooner."""


@dataclass(frozen=True)
class Rule:
    """At most `allowed` creations in any `window_s`: `rate` a second on average, `BURST`
    at once. The window is at least a second (JetStream ages messages out no finer than
    100 ms), so a rate above `BURST` a second allows that many in one second instead."""

    rate: float

    @property
    def window_s(self) -> float:
        return max(BURST / self.rate, 1.0)

    @property
    def allowed(self) -> int:
        return max(BURST, round(self.rate * self.window_s))

    def refusal(self) -> Exception:
        return too_many(
            f"at most {self.allowed} room creations in {self.window_s:g} s ({self.rate:g} a second);"
            " try again shortly"
        )


class CreationLimit(Protocol):
    async def take(self, identity: str) -> None:
        """Count one creation by `identity`, or raise 429 (nothing counted)."""
        ...


@dataclass
class LocalCreations:
    """The rule in memory, for a single instance without JetStream."""

    rule: Rule
    _times: dict[str, deque[float]] = field(default_factory=dict)

    async def take(self, identity: str) -> None:
        now, window = time.monotonic(), self.rule.window_s
        times = self._times.setdefault(identity, deque())
        while times and now - times[0] >= window:
            times.popleft()
        if len(times) >= self.rule.allowed:
            raise self.rule.refusal()
        times.append(now)
        if len(self._times) > 10_000:  # forget creators whose window has passed
            self._times = {k: v for k, v in self._times.items() if v and now - v[-1] < window}


class SharedCreations:
    """The rule in JetStream, shared by every instance of the deployment."""

    def __init__(self, nc: Client, js: JetStreamContext, config: Config) -> None:
        self._nc = nc
        self._js = js
        self._rule = Rule(config.creates_per_second)
        self._prefix = config.api_prefix
        self._stream = creations_stream_name(config.api_prefix)
        self._timeout = config.js_timeout_s

    @classmethod
    async def open(cls, nc: Client, js: JetStreamContext, config: Config, replicas: int) -> SharedCreations:
        """Create the stream with its reservation, or bring an existing one to this window
        (app.py reserves an older one's space, as the other streams of the service)."""
        rule = Rule(config.creates_per_second)
        stream = StreamConfig(
            name=creations_stream_name(config.api_prefix),
            subjects=[creations_subject(config.api_prefix)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=max(1, replicas),
            max_age=rule.window_s,
            max_msgs_per_subject=rule.allowed + 1,
            discard=DiscardPolicy.OLD,
            max_bytes=CREATIONS_MAX_BYTES,
        )
        name, timeout_s = stream.name or "", config.js_timeout_s
        try:
            # Looked up first: JetStream checks an add's reservation before it finds the
            # stream exists, so on a full store even an add of the same config is refused.
            info = await asyncio.wait_for(js.stream_info(name), timeout_s)
        except jserr.NotFoundError:
            await _create(js, stream, timeout_s)
            return cls(nc, js, config)
        wanted = (stream.max_age, stream.max_msgs_per_subject)
        if (info.config.max_age, info.config.max_msgs_per_subject) != wanted:
            # The rate was changed: the instance started last sets it for all.
            changed = replace(
                info.config, max_age=stream.max_age, max_msgs_per_subject=stream.max_msgs_per_subject
            )
            await asyncio.wait_for(js.update_stream(changed), timeout_s)
        return cls(nc, js, config)

    async def take(self, identity: str) -> None:
        subject = creations_subject(self._prefix, identity)
        ack = await self._js.publish(subject, b"", timeout=self._timeout, stream=self._stream)
        if await self._count(subject) <= self._rule.allowed:
            return
        await self._js.delete_msg(self._stream, ack.seq)
        raise self._rule.refusal()

    async def _count(self, subject: str) -> int:
        """Creations of one identity still in the window, from one raw STREAM.INFO."""
        info = await jsapi.request(
            self._nc, f"STREAM.INFO.{self._stream}", {"subjects_filter": subject}, self._timeout
        )
        return int((info["state"].get("subjects") or {}).get(subject, 0))


async def _create(js: JetStreamContext, stream: StreamConfig, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(js.add_stream(stream), timeout_s)
    except jserr.APIError as err:
        if err.err_code != JSStreamNameExistErr:  # another instance starting made it
            raise


async def creation_limit(nc: Client, js: JetStreamContext, config: Config, replicas: int) -> CreationLimit:
    """The shared count, or, with a warning, the count in memory rather than an instance
    that cannot start or refuses every create: on a store that rooms already hold whole
    (JetStream makes no new stream there), or under a boundary.conf from before the count
    (the service's user may not publish it)."""
    local = LocalCreations(Rule(config.creates_per_second))
    try:
        shared = await SharedCreations.open(nc, js, config, replicas)
    except jserr.APIError as err:
        if err.err_code != JSStorageResourcesExceededErr:
            raise
        log.warning(
            "stream %s: the JetStream store has no room for it; creations are counted per instance"
            " until a restart finds room: raise max_file_store or delete rooms",
            creations_stream_name(config.api_prefix),
        )
        return local
    # Stored and acknowledged only if the service's user may publish there (a refused
    # publish is dropped: no acknowledgement comes). The message ages out with the window;
    # "startup" is never an identity's key. An acknowledgement is proof; the `-ERR` that
    # also comes is not, since a later error on the connection may replace it.
    # A stream just made on a cluster may not listen yet ("no responders"): ask again.
    probe = creations_subject(config.api_prefix, "startup")
    deadline = asyncio.get_running_loop().time() + _PROBE_S
    while True:
        try:
            await js.publish(probe, b"", timeout=min(_PROBE_S, config.js_timeout_s))
            return shared
        except jserr.NoStreamResponseError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
        except (nats.errors.TimeoutError, jserr.APIError) as exc:
            log.warning(
                "the service's user may not publish %s (%s): creations are counted per"
                " instance; use deploy/nats/boundary.conf or `unibus boundary config` of this"
                " version",
                probe,
                nc.last_error or exc,
            )
            return local


_PROBE_S = 5.0
