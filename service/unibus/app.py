"""The control plane as a NATS micro service: wiring, dispatch and the error convention.

Each endpoint is a queue-group subscription registered through `nats.micro`, so instances
share load and show up in `$SRV.PING/INFO/STATS`; the auth callout is one of them, on a
connection of its own (links.py). The framework calls a handler one message at a time per
subscription; requests, the callout's included, are handed to tasks instead (bounded by
`max_in_flight`) so one large history read never holds up small ones, and one connect
waiting on the room bucket never holds up the next.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Final, NamedTuple

import nats
import nats.errors
import nats.js.errors as jserr
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.micro import add_service
from nats.micro.request import Handler, Request
from nats.micro.service import Service, ServiceConfig
from prometheus_client import CollectorRegistry

from . import __version__, notices, orphans
from .auth import AuthFailed, Caller, LocalNonces, ReplayCheckUnavailable, Verifier, replies
from .auth.replay import SharedNonces, SqliteNonces
from .auth.replies import ReplyElsewhere
from .callout.authorizer import Authorizer, current_rooms
from .callout.connections import ConnectionCounts, EventsRefused
from .callout.keys import BoundaryKeys
from .callout.revoker import Revoker
from .config import AuthMode, Config
from .endpoints import ENDPOINTS, Call, Deps, Endpoint, Reply
from .endpoints.creations import (
    CREATIONS_MAX_BYTES,
    CreationLimit,
    LocalCreations,
    Rule,
    SharedCreations,
    creation_limit,
)
from .errors import ApiError, DomainError, StartRefused, bad_request
from .history import Backlog
from .links import Links
from .metrics import CacheCollector, CacheFigures, MetricsServer, ServiceMetrics
from .notices import Notice
from .operations.backup import restore_lock_name
from .operations.reservation import reserve
from .servicestats import ServiceStats, add_endpoint_on
from .storage import ConcurrentChange, KvStore, RoomExists, RoomStore, SqliteStore, StoreUnavailable
from .storage.rooms import RowTooNew
from .streams import StreamPolicy, StreamTaken, largest_frame
from .wire import connection
from .wire.ids import ROOM_ID_RULE, is_room_id
from .wire.interest import confirm_interest
from .wire.jscodes import JSNotEnabledForAccountErr
from .wire.names import CALLOUT_SUBJECT, bucket_name, creations_stream_name, nonce_stream_name
from .wire.signing import RECONNECT_HEADER

log = logging.getLogger(__name__)


ORPHAN_SWEEP_S = 600.0
CALLOUT_ENDPOINT = "auth-callout"

Answer = Callable[[Request], Awaitable["Answered"]]
"""One endpoint's work on one request: it replies (or not) and says how it went."""

STATUS: Final[Mapping[type[DomainError], int]] = {
    AuthFailed: 401,
    RoomExists: 409,
    StreamTaken: 409,
    StoreUnavailable: 503,
    ConcurrentChange: 503,
    RowTooNew: 503,
    ReplayCheckUnavailable: 503,
    ReplyElsewhere: 403,
}
"""The one table from what a lower layer names to the status a caller gets, as drawn in
docs/architecture.md ("Errors where they happen") with the codes of docs/protocol.md. Every
`DomainError` is in it: none may end as a 500 (tests/unit/test_errors.py)."""


def status_of(error: DomainError) -> int:
    """`error`'s status: its own class's, or the nearest base class's in `STATUS`; 500 (and
    a log line: the table has a gap) for a class nobody mapped."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    log.error("%s has no status in app.STATUS: answered 500", type(error).__name__)
    return 500


class ControlPlane:
    def __init__(self, config: Config, links: Links) -> None:
        self.config = config
        self.links = links
        self.nc = links.service
        self.revoker: Revoker | None = None
        self.stats: ServiceStats | None = None
        self.metrics: ServiceMetrics | None = None
        self._metrics_server: MetricsServer | None = None
        self._sqlite_nonces: SqliteNonces | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.deps: Deps | None = None
        self.service: Service | None = None
        self._authorizer: Authorizer | None = None
        self.verifier = Verifier(config.auth_mode, config.clock_skew_s, LocalNonces(config.clock_skew_s))
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._room_token = len(config.api_prefix.split(".")) + 1

    async def start(self) -> ControlPlane:
        js = await _jetstream(self.nc, self.config)
        replicas = _replicas(self.nc, self.config) if js else 1
        store: RoomStore
        creations: CreationLimit
        if js is not None:
            await _no_restore_under_way(js, self.config)
            store = await KvStore.open(
                js,
                replicas,
                self.config.js_timeout_s,
                self.nc,
                self.config.api_prefix,
                self.config.bucket_max_bytes,
            )
            # Instances of a queue group must share one replay guard (LocalNonces otherwise).
            self.verifier.replay = await SharedNonces.open(js, self.config, replicas)
            # …and one creation count, or each instance would add its own rate (creations.py).
            creations = await creation_limit(self.nc, js, self.config, replicas)
            await self._reserve_own_streams(js, counted=isinstance(creations, SharedCreations))
        else:
            log.warning("no JetStream: rooms are kept in SQLite and histories are empty")
            data = Path(self.config.data_dir)
            store = SqliteStore(data / "rooms.sqlite")
            self._sqlite_nonces = SqliteNonces(data / "nonces.sqlite", self.config.clock_skew_s)
            self.verifier.replay = self._sqlite_nonces
            creations = LocalCreations(Rule(self.config.creates_per_second))
        limit = self.config.room_max_msg_size or largest_frame(self.nc.max_payload)
        policy = StreamPolicy(replicas, self.config.room_max_bytes, limit, self.config.api_prefix)
        self.deps = Deps(
            self.config,
            store,
            self.nc,
            js,
            policy,
            creations,
            Backlog(self.nc, js, policy, self.config.js_timeout_s, self.config.history_cache_bytes),
        )
        self.service = await add_service(
            self.links.responder,
            ServiceConfig(
                name=self.config.service_name,
                version=__version__,
                description="unibus rooms: membership, signed requests and durable history",
                queue_group=self.config.queue_group,
                metadata={"api_prefix": self.config.api_prefix, "jetstream": str(js is not None).lower()},
            ),
        )
        self.stats = ServiceStats(self.service)
        if self.config.metrics_listen:
            self._serve_metrics(self.config.metrics_listen, self.deps.backlog.cache)
        group = self.service.add_group(name=f"{self.config.api_prefix}.rooms")
        for endpoint in ENDPOINTS:
            await group.add_endpoint(
                name=endpoint.name,
                subject=endpoint.suffix,
                handler=self._dispatcher(endpoint.name, partial(self._handle, endpoint)),
            )
        if self.links.system is not None:
            self.revoker = Revoker(
                self.links.system,
                store,
                page_size=self.config.connz_page_size,
                sweep_s=self.config.revocation_sweep_s,
            )
            await self.revoker.learn_servers()
            self.revoker.start()
        if self.links.keys is not None and self.links.callout is not None:
            await self._serve_callout(self.links.callout, self.links.keys, store)
        if js is not None:
            self._sweeper = asyncio.create_task(self._sweep_orphans(js, store), name="unibus-orphans")
        await confirm_interest(self.links.responder)
        log.info(
            "serving %s.rooms.* (jetstream=%s, replicas=%d, auth=%s, boundary=%s)",
            self.config.api_prefix,
            js is not None,
            replicas,
            self.config.auth_mode.value,
            "on" if self.links.keys else "off",
        )
        return self

    def _serve_metrics(self, listen: str, frames: CacheFigures) -> None:
        registry = CollectorRegistry()
        self.metrics = ServiceMetrics(registry)
        registry.register(CacheCollector(frames))
        self._metrics_server = MetricsServer(listen, registry)
        log.info("metrics on %s", self._metrics_server.url)

    @property
    def metrics_url(self) -> str | None:
        """The Prometheus endpoint as bound, when `metrics_listen` asked for one."""
        return self._metrics_server.url if self._metrics_server is not None else None

    async def _sweep_orphans(self, js: JetStreamContext, store: RoomStore) -> None:
        """Now and every `ORPHAN_SWEEP_S`: streams whose room never came (orphans.py)."""
        while True:
            try:
                config = self.config
                await orphans.sweep(
                    self.nc, js, store, config.room_subject_prefix, config.api_prefix, config.js_timeout_s
                )
            except Exception:
                log.warning("orphan sweep failed; next in %.0f s", ORPHAN_SWEEP_S, exc_info=True)
            await asyncio.sleep(ORPHAN_SWEEP_S)

    async def _serve_callout(self, callout: Client, keys: BoundaryKeys, store: RoomStore) -> None:
        """The auth callout, an endpoint of this service received on the callout's own
        connection: it shares the queue group, so it scales with the instances, shows in
        `$SRV.STATS`, and is answered concurrently like every endpoint."""
        assert self.service is not None
        self._authorizer = Authorizer(
            issuer=keys.issuer,
            rooms_of=current_rooms(store),
            api_prefix=self.config.api_prefix,
            room_subject_prefix=self.config.room_subject_prefix,
            allow_anonymous=self.config.auth_mode is not AuthMode.ENFORCE,
            ttl_s=self.config.callout_ttl_s,
            revision=lambda: store.revision,
            connections=await self._connection_counts(),
            max_connections=self.config.max_connections_per_identity,
        )
        handler = self._dispatcher(CALLOUT_ENDPOINT, self._authorize)
        await add_endpoint_on(callout, self.service, CALLOUT_ENDPOINT, CALLOUT_SUBJECT, handler)
        await confirm_interest(callout)

    async def _authorize(self, request: Request) -> Answered:
        """Answer one callout with the signed authorization response (a user JWT, or a
        refusal the server turns into `Authorization Violation`). A request that cannot be
        read gets no answer at all: it did not come from a server, so its reply subject is
        nobody's pending connect, and the stats count it as an error."""
        assert self._authorizer is not None
        started = time.perf_counter()
        try:
            token, decision = await self._authorizer.answer(request.data)
            if token is not None:
                await request.respond(token)
        except Exception:
            log.exception("auth callout: internal error")
            return Answered(500, "500 internal error", [])
        if self.metrics is not None:
            self.metrics.callout_decisions.labels(decision).inc()
            self.metrics.callout_latency.observe(time.perf_counter() - started)
        if decision == "unreadable":
            return Answered(400, "400 unreadable authorization request (not answered)", [])
        if decision == "refused":
            return Answered(403, "403 connection refused", [])
        return Answered(200, None, [])

    async def _connection_counts(self) -> ConnectionCounts | None:
        """Kept from the servers' connect events, for the per-identity connection limit."""
        if self.revoker is None or self.links.system is None or not self.config.max_connections_per_identity:
            return None
        counts = ConnectionCounts(self.links.system, self.revoker)
        try:
            await counts.start()
        except EventsRefused as exc:
            log.warning(
                "no per-identity connection limit: the system user may not follow connection events (%s);"
                " use deploy/nats/boundary.conf or `unibus boundary config` of this version",
                exc,
            )
            return None
        return counts

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait({self._sweeper}, timeout=self.config.js_timeout_s)
        if self.service is not None:
            try:
                await asyncio.wait_for(self.service.stop(), self.config.js_timeout_s)
            except Exception:  # NATS may already be gone; nothing is lost by not draining
                log.debug("service stop", exc_info=True)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.config.js_timeout_s)
        if self.revoker is not None:
            await self.revoker.close()
        if self.deps is not None:
            await self.deps.store.close()
        if self._sqlite_nonces is not None:
            self._sqlite_nonces.close()
        if self._metrics_server is not None:
            self._metrics_server.close()

    @property
    def store(self) -> RoomStore:
        assert self.deps is not None
        return self.deps.store

    def _dispatcher(self, name: str, answer: Answer) -> Handler:
        """The framework's handler for endpoint `name`: hands each request to a task, at
        most `max_in_flight` across every endpoint at once, and returns."""

        async def dispatch(request: Request) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._timed(name, answer, request))
            self._tasks.add(task)
            task.add_done_callback(self._done)

        return dispatch

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _timed(self, name: str, answer: Answer, request: Request) -> None:
        started = time.perf_counter_ns()
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            answered = await answer(request)
        finally:
            if self.metrics is not None:
                self.metrics.in_flight.dec()
        # Timed to the reply: the notices go after it.
        elapsed = time.perf_counter_ns() - started
        if self.stats is not None:
            self.stats.record(name, elapsed, answered.error)
        if self.metrics is not None:
            self.metrics.observe(name, answered.code, elapsed / 1e9)
        if answered.notices:
            await notices.send(self.links.responder, answered.notices)

    async def _reserve_own_streams(self, js: JetStreamContext, counted: bool) -> None:
        """The room bucket, the nonce stream and the creation counts (when `counted` in
        JetStream) are created with their reservations; ones an older version made get
        theirs now (operations/reservation.py)."""
        prefix, timeout_s = self.config.api_prefix, self.config.js_timeout_s
        await reserve(js, f"KV_{bucket_name(prefix)}", self.config.bucket_max_bytes, timeout_s)
        await reserve(js, nonce_stream_name(prefix), self.config.nonces_max_bytes, timeout_s)
        if counted:
            await reserve(js, creations_stream_name(prefix), CREATIONS_MAX_BYTES, timeout_s)

    async def _handle(self, endpoint: Endpoint, request: Request) -> Answered:
        """Answer one request, with a reply or an ADR-32 error, never an exception."""
        told: list[Notice] = []
        try:
            caller, (body, headers) = await self._answer(endpoint, request, told)
            if self.links.keys is not None:
                # The caller learns of its own new room from the reply, not a notice.
                if any(n.identity == caller.signer and n.event == "granted" for n in told):
                    headers = {**headers, RECONNECT_HEADER: "true"}
                    told = [n for n in told if n.identity != caller.signer]
            else:
                told = []  # no boundary: permissions do not depend on rooms
            await request.respond(body, headers=headers)
            return Answered(200, None, told)
        except ApiError as err:
            return await _failed(request, err.code, err.message)
        except DomainError as err:
            return await _failed(request, status_of(err), str(err))
        except (
            TimeoutError,
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
            jserr.ServiceUnavailableError,
            jserr.NoStreamResponseError,
        ) as exc:
            log.warning("%s: data plane unavailable", endpoint.name, exc_info=True)
            if self.metrics is not None:
                self.metrics.jetstream_errors.labels(endpoint.name, type(exc).__name__).inc()
            return await _failed(request, 503, "data plane unavailable, try again")
        except Exception:
            # The detail goes to the log, never to the caller.
            log.exception("%s: internal error", endpoint.name)
            return await _failed(request, 500, "internal error")

    async def _answer(self, endpoint: Endpoint, request: Request, told: list[Notice]) -> tuple[Caller, Reply]:
        assert self.deps is not None
        data = request.data
        if len(data) > self.config.max_body_bytes:
            raise ApiError(413, f"body larger than {self.config.max_body_bytes} bytes")
        headers = request.headers or {}
        caller, nonce = self.verifier.authenticate(request.subject, headers, data)
        room_id = None
        if endpoint.per_room:
            room_id = request.subject.split(".")[self._room_token]
            if not is_room_id(room_id):
                raise bad_request(f"room id must be {ROOM_ID_RULE}")
        call = Call(self.deps, caller, request.subject, headers, data, room_id, told)
        if nonce is None:
            return caller, await endpoint.handler(call)
        if not endpoint.read_only:
            await self.verifier.claim(nonce)
            return caller, await endpoint.handler(call)
        # nats.micro's Request exposes no reply subject; its message has it.
        if not replies.needs_claim(request._msg.reply, nonce.signer) and self.links.keys is not None:
            return caller, await endpoint.handler(call)  # to the signer's inbox (auth/replies.py)
        # A read changes nothing, so its replay check (a JetStream round trip) runs beside
        # it; a replayed or unverifiable request still gets the check's answer, never data.
        claiming = asyncio.create_task(self.verifier.claim(nonce))
        try:
            reply = await endpoint.handler(call)
        except Exception:
            await claiming
            raise
        await claiming
        return caller, reply


class Answered(NamedTuple):
    code: int
    error: str | None
    """What `$SRV.STATS` shows as the last error ("404 room not found"); None for a reply."""
    notices: list[Notice]
    """Identities to tell that they gained or lost a room (notices.py)."""


async def _failed(request: Request, code: int, message: str) -> Answered:
    """Answer with an ADR-32 error, its message also as the JSON body."""
    body = json.dumps({"error": message}).encode()
    try:
        await request.respond_error(
            str(code), message, data=body, headers={"Content-Type": "application/json"}
        )
    except Exception:  # the caller may be gone, or NATS with it
        log.debug("could not send error reply", exc_info=True)
    return Answered(code, f"{code} {message}", [])


_JS_STARTUP_WAIT_S = 30.0


async def _no_restore_under_way(js: JetStreamContext, config: Config) -> None:
    """Refuse to start while `unibus restore` holds its lock, or a killed one left it: the
    bucket may be missing or partly back, and an instance would create an empty one (the
    restore then refuses), serve part of the rows, and sweep the streams of the rest as
    orphans."""
    lock = restore_lock_name(config.api_prefix)
    try:
        await asyncio.wait_for(js.stream_info(lock), config.js_timeout_s)
    except jserr.NotFoundError:
        return
    raise StartRefused(
        f"a restore of this deployment is running or was interrupted ({lock} exists): see"
        " docs/operations.md, Backup and restore"
    )


async def _jetstream(nc: Client, config: Config) -> JetStreamContext | None:
    """JetStream if this NATS has it, None if it has none.

    "None" must mean the server really has no JetStream (no responder for its API, or not
    enabled for the account): a cluster still electing its meta leader answers "temporarily
    unavailable", and falling back to the local SQLite store then would split this instance
    off from the others' rooms. So transient answers are waited out, and then start fails."""
    if not config.use_jetstream:
        return None
    js = nc.jetstream(timeout=config.js_timeout_s)
    deadline = asyncio.get_running_loop().time() + _JS_STARTUP_WAIT_S
    while True:
        try:
            await js.account_info()
            return js
        except nats.errors.NoRespondersError:
            return None
        except jserr.APIError as err:
            # nats-py reports "no responders" as a ServiceUnavailableError without a code.
            if err.err_code == JSNotEnabledForAccountErr or err.code is None:
                return None
            failure: Exception = err
        except nats.errors.TimeoutError as err:
            failure = err
        if asyncio.get_running_loop().time() > deadline:
            raise StartRefused(f"JetStream did not become available: {failure}") from failure
        log.warning("JetStream not ready yet (%s); waiting", failure)
        await asyncio.sleep(1.0)


def _replicas(nc: Client, config: Config) -> int:
    """Configured, or 3 on a cluster and 1 standalone (see docs/operations.md)."""
    if config.replicas > 0:
        return min(config.replicas, 5)
    info = connection.server_info(nc)
    return 3 if info.get("cluster") else 1
