"""Signed requests to the control endpoints, one method per endpoint.

A reply published while the connection is away (cut for a membership change, a JWT
expiry, a NATS restart) is lost. A read is then sent again, signed afresh (a signature's
nonce is single-use), so a reader sees a cut as a short delay. A change is never sent
twice: whether the first one was applied cannot be known from here, so when its reply
does not come after a cut the caller gets `ReplyLost` and decides (read, then retry).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from ..identity import Identity, inbox_prefix
from ..wire.names import CONTROL_PREFIX, ERROR_CODE_HEADER, ERROR_HEADER, control_subject
from ..wire.signing import RECONNECT_HEADER, sign_request
from .errors import ReplyLost, ServiceError, Unavailable, error_for

READS = frozenset({"list", "info", "members", "key", "history"})
"""The endpoints (last token of the subject) that change nothing, so may be sent again."""

_CUT_POLL_S = 0.05
"""How often a request in flight looks for a reconnect that would have lost its reply."""
_RETRY_FIRST_S, _RETRY_MAX_S = 0.1, 1.0
"""The pause before a read answered 503 is sent again, doubling up to the second."""


def _cured_by_retrying(error: ServiceError) -> bool:
    """A 503 that the same request, signed again, may pass in a moment; not the refusal
    after a restore that names when replay protection resumes, minutes away perhaps."""
    return isinstance(error, Unavailable) and error.resumes_at is None


class ControlClient:
    """Talks to the control plane over NATS. `identity=None` sends unsigned requests."""

    def __init__(
        self, nc: Client, identity: Identity | None, prefix: str = CONTROL_PREFIX, timeout_s: float = 10.0
    ) -> None:
        self.nc = nc
        self.identity = identity
        self.prefix = prefix
        self.timeout_s = timeout_s

    async def request_raw(
        self, suffix: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The reply's body and headers; a service error raised as its `ServiceError`. A
        read answered 503 (JetStream electing a leader, a replica behind its own state) is
        sent again, signed afresh, after 100 ms doubling to 1 s, within `timeout_s` in all:
        the protocol says retrying is right, so no caller should have to. A change's 503
        is the caller's, and so is a refusal that names when replay protection resumes."""
        subject = control_subject(self.prefix, suffix)
        read = suffix.rsplit(".", 1)[-1] in READS
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        pause = _RETRY_FIRST_S
        unavailable: ServiceError | None = None
        while True:
            reconnects = self.nc.stats["reconnects"]
            try:
                reply = await self._exchange(subject, body, headers, read, deadline)
            except nats.errors.TimeoutError:
                if unavailable is not None:
                    raise unavailable from None  # the last word the service said
                raise
            except nats.errors.NoRespondersError:
                # As NATS says it, with the subject: a wrong prefix is told apart from a stopped service.
                raise Unavailable(
                    503,
                    f"no responders available for request: no control plane instance subscribes to {subject}",
                ) from None
            reply_headers = reply.headers or {}
            code = reply_headers.get(ERROR_CODE_HEADER)
            if code:
                error = error_for(int(code), reply_headers.get(ERROR_HEADER, ""))
                if not (read and _cured_by_retrying(error)) or loop.time() + pause >= deadline:
                    raise error
                unavailable = error
                await asyncio.sleep(pause)
                pause = min(pause * 2, _RETRY_MAX_S)
                continue
            if RECONNECT_HEADER in reply_headers and self._connected_as_signer():
                await self._reauthorized(reconnects)
            return reply.data, reply_headers

    async def _exchange(
        self, subject: str, body: bytes, headers: dict[str, str] | None, resend: bool, deadline: float
    ) -> Msg:
        """The reply to one request, by `deadline` (the loop's clock). A reconnect while it
        is in flight may have lost the reply: a read (`resend`) is then sent again, freshly
        signed; a change keeps waiting for its reply, which still comes if the request
        reached the service after the reconnect, and is `ReplyLost` if it does not."""
        loop = asyncio.get_running_loop()
        cut = False
        while True:
            signed = dict(headers or {})
            if self.identity is not None:
                signed.update(sign_request(self.identity, subject, body))
            reconnects = self.nc.stats["reconnects"]
            timeout = max(deadline - loop.time(), 0.001)
            attempt = asyncio.ensure_future(
                self.nc.request(subject, body, timeout=timeout, headers=signed or None)
            )
            try:
                while not attempt.done():
                    await asyncio.wait({attempt}, timeout=_CUT_POLL_S)
                    if self.nc.stats["reconnects"] != reconnects and self.nc.is_connected:
                        cut = True
                        if resend:
                            break
                if attempt.done():
                    return attempt.result()
            except nats.errors.TimeoutError:
                if cut and not resend:
                    raise ReplyLost(subject) from None
                raise
            finally:
                if not attempt.done():
                    attempt.cancel()
            if loop.time() >= deadline:
                raise nats.errors.TimeoutError

    def _connected_as_signer(self) -> bool:
        """Whether this connection is the signer's own: under the boundary only a connection
        authenticated with the signer's key can use the signer's inbox."""
        if self.identity is None:
            return False
        return self.nc.new_inbox().startswith(inbox_prefix(self.identity.public_key) + ".")

    async def _reauthorized(self, reconnects_before: int) -> None:
        """Reconnect, so the callout grants the room just gained (the service cuts nobody
        for a grant), and wait until back: a publish to the room is refused before that."""
        if self.nc.stats["reconnects"] <= reconnects_before:
            await self.nc.force_reconnect()
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while self.nc.stats["reconnects"] <= reconnects_before or not self.nc.is_connected:
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(503, "the connection was not re-authorized in time")
            await asyncio.sleep(0.005)

    async def call(self, suffix: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps(payload).encode() if payload is not None else b""
        data, _ = await self.request_raw(suffix, body)
        result: dict[str, Any] = json.loads(data)
        return result

    async def create_room(self, room_id: str | None = None, **fields: Any) -> dict[str, Any]:
        payload = {k: v for k, v in {"id": room_id, **fields}.items() if v is not None}
        return await self.call("create", payload)

    async def list_rooms(self) -> list[dict[str, Any]]:
        return list((await self.call("list"))["rooms"])

    async def info(self, room_id: str) -> dict[str, Any]:
        return await self.call(f"{room_id}.info")

    async def members(self, room_id: str) -> dict[str, Any]:
        return await self.call(f"{room_id}.members")

    async def add_member(
        self, room_id: str, member: str, role: str = "member", sealed_key: str | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"member": member, "role": role}
        if sealed_key is not None:
            payload["sealed_key"] = sealed_key
        return await self.call(f"{room_id}.members.add", payload)

    async def remove_member(
        self, room_id: str, member: str, sealed_keys: dict[str, str] | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"member": member}
        if sealed_keys is not None:
            payload["sealed_keys"] = sealed_keys
        return await self.call(f"{room_id}.members.remove", payload)

    async def rotate_key(self, room_id: str, sealed_keys: dict[str, str]) -> dict[str, Any]:
        return await self.call(f"{room_id}.key.rotate", {"sealed_keys": sealed_keys})

    async def sealed_keys(self, room_id: str) -> dict[str, Any]:
        return await self.call(f"{room_id}.key")

    async def delete_room(self, room_id: str) -> dict[str, Any]:
        return await self.call(f"{room_id}.delete")

    async def history(
        self, room_id: str, limit: int | None = None, before: int | None = None, after: int | None = None
    ) -> FramePage:
        """One page of raw frames, oldest first (msgpack on the wire: no base64 cost):
        the newest, those before `before`, or (a follower's) the oldest after `after`."""
        params = (("limit", limit), ("before", before), ("after", after))
        query = "&".join(f"{k}={v}" for k, v in params if v is not None)
        data, _ = await self.request_raw(
            f"{room_id}.history", query.encode(), {"Accept": "application/msgpack"}
        )
        envelope = msgpack.unpackb(data, raw=False)
        return FramePage(
            list(envelope["messages"]),
            envelope.get("first_seq"),
            envelope.get("last_seq"),
            list(envelope.get("seqs") or ()),
            envelope.get("stream_last_seq"),
        )

    async def backlog(self, room_id: str, page_size: int = 1000) -> AsyncIterator[bytes]:
        """Every stored frame, newest first (each page is read oldest first and yielded
        reversed): follow `before` until the service says there is nothing older."""
        before: int | None = None
        while True:
            page = await self.history(room_id, limit=page_size, before=before)
            for frame in reversed(page.frames):
                yield frame
            if page.first_seq is None or page.first_seq <= 1:
                return
            before = page.first_seq


class FramePage:
    __slots__ = ("first_seq", "frames", "last_seq", "seqs", "stream_last_seq")

    def __init__(
        self,
        frames: list[bytes],
        first_seq: int | None,
        last_seq: int | None,
        seqs: list[int],
        stream_last_seq: int | None = None,
    ) -> None:
        self.frames = frames
        self.first_seq = first_seq
        self.last_seq = last_seq
        self.seqs = seqs
        """Each frame's stream sequence; empty from a service older than the field."""
        self.stream_last_seq = stream_last_seq
        """The stream's last sequence at the read, in a reply to `after` (None otherwise,
        and from a service older than `after`)."""
