"""The auth callout: nats-server asks, for every connection that is not a static user,
who it is and what it may do; the answer is a short-lived user JWT.

Checks run in the order nats-server itself would verify a connection: the request is
really from a server (its signature, its kind), then the client proves its nkey (an
ed25519 signature over the nonce the server sent it), then the identity's rooms decide
its permissions. A refusal is an authorization response carrying an error, which the
server turns into `Authorization Violation` for the client.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import nkeys

from .. import identity
from ..logthrottle import Throttle
from ..storage import Room, RoomStore
from . import jwt
from .grants import Grant
from .permissions import Permissions, for_anonymous, for_member
from .serverconf import ACCOUNT

log = logging.getLogger(__name__)

RoomsOf = Callable[[str], Awaitable[Iterable[Room]]]

Decision = Literal["member", "anonymous", "refused", "unreadable"]
"""What the callout decided: admit with a member's or the anonymous permissions, refuse
with an error, or send no answer at all to a request it could not read."""


class ConnectionCount(Protocol):
    """How many connections an identity holds, on every server (connections.py)."""

    async def held(self, identity: str) -> int: ...

    def admitted(self, identity: str) -> None: ...


def current_rooms(store: RoomStore) -> RoomsOf:
    """An identity's rooms for a permission grant, from a copy brought up to date first:
    a copy that lags behind (its watch cut by a NATS restart) would hand back a room the
    identity was just removed from, or leave out one it was just added to."""

    async def rooms_of(member: str) -> list[Room]:
        await store.catch_up()
        return await store.rooms_of(member)

    return rooms_of


class Refused(Exception):
    """The connection is not admitted; the message goes back to the server's log."""


@dataclass(frozen=True)
class AuthRequest:
    server_id: str
    user_nkey: str
    """The key nats-server made for this connection: the JWT's subject must be it."""
    client_name: str
    client_kind: str


@dataclass
class Authorizer:
    issuer: nkeys.KeyPair
    rooms_of: RoomsOf
    api_prefix: str
    room_subject_prefix: str
    allow_anonymous: bool
    ttl_s: float
    """User JWTs expire after this: the backstop bound on a stale permission should every
    revoker miss it (docs/security.md)."""
    revision: Callable[[], int] = lambda: 0
    """The room copy's position, read right after `rooms_of`: the stamp of the grant the
    connection is named after (grants.py). A stamp that comes out too new only defers the
    revoker's judgment of the grant until its copy gets there."""
    refusals: Throttle = field(default_factory=lambda: Throttle(log))
    """Refused and unreadable requests are logged rate-limited with counts: anyone can
    cause them, as fast as they can connect (the metrics count each)."""
    connections: ConnectionCount | None = None
    max_connections: int = 0
    """Connections one identity may hold at once; the next is refused (0: no limit), so
    one identity cannot take the server's whole `max_connections` from everyone."""

    async def answer(self, request_jwt: bytes) -> tuple[bytes | None, Decision]:
        """The signed authorization response for one request (a user JWT, or an error),
        and what was decided; None instead of a response to a request that is not a
        server's (unreadable, or with no connection to address): it is not answered."""
        try:
            claims = jwt.decode(request_jwt.decode())
        except (UnicodeDecodeError, jwt.InvalidToken) as exc:
            self.refusals.log(logging.WARNING, "unreadable", "auth callout: unreadable request (%s)", exc)
            return None, "unreadable"
        try:
            request = _parse(claims)
        except Refused as exc:
            self.refusals.log(logging.WARNING, "malformed", "auth callout: malformed request (%s)", exc)
            return None, "unreadable"
        decision: Decision
        try:
            user_jwt, decision = await self._user_jwt(request, claims["nats"])
            body: dict[str, Any] = {"jwt": user_jwt}
        except Refused as exc:
            self.refusals.log(
                logging.INFO,
                f"refused: {exc}",
                "auth callout: refused %r (%s): %s",
                request.client_name,
                request.client_kind,
                exc,
            )
            body, decision = {"error": str(exc)}, "refused"
        response = {
            "sub": request.user_nkey,
            "aud": request.server_id,
            "nats": {**body, "type": "authorization_response", "version": 2},
        }
        return jwt.encode(response, self.issuer).encode(), decision

    async def _user_jwt(self, request: AuthRequest, nats: dict[str, Any]) -> tuple[str, Decision]:
        who = _proven_identity(nats)
        permissions: Permissions
        decision: Decision = "member"
        if who is None:
            if not self.allow_anonymous:
                raise Refused("connect with your nkey (the one you sign requests with)")
            permissions = for_anonymous(self.api_prefix, self.room_subject_prefix)
            name, decision = "anonymous", "anonymous"
        else:
            await self._below_connection_limit(who)
            try:
                rooms = await self.rooms_of(who)
            except Exception as exc:  # no fresh view of its rooms: refuse, the client retries
                log.warning("auth callout: rooms of %s unavailable: %r", who, exc)
                raise Refused("room storage unavailable, try again") from exc
            rooms = list(rooms)
            grant = Grant.of(who, rooms, self.revision())
            permissions = for_member(who, rooms, self.api_prefix, self.room_subject_prefix)
            name = grant.user_name  # what the revoker reads back from CONNZ (grants.py)
        now = int(time.time())
        user = {
            "sub": request.user_nkey,
            "name": name,
            "aud": ACCOUNT,
            "iat": now,
            "exp": now + int(self.ttl_s),
            "nats": {
                **permissions.claims(),
                "subs": -1,
                "data": -1,
                "payload": -1,
                "type": "user",
                "version": 2,
            },
        }
        return jwt.encode(user, self.issuer), decision

    async def _below_connection_limit(self, who: str) -> None:
        if not self.max_connections or self.connections is None:
            return
        held = await self.connections.held(who)
        if held >= self.max_connections:
            raise Refused(
                f"this identity holds {held} connections, the most one may ({self.max_connections})"
            )
        # Counted at once, with no await between the count and it: callouts are answered
        # concurrently, and a burst must not all pass one count. (Refused later after all,
        # it stops counting when its connect event does not come.)
        self.connections.admitted(who)


def _parse(claims: dict[str, Any]) -> AuthRequest:
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("type") != "authorization_request":
        raise Refused("not an authorization request")
    if not str(claims.get("iss", "")).startswith("N"):
        raise Refused("not signed by a server")
    server, client = nats.get("server_id") or {}, nats.get("client_info") or {}
    user_nkey, server_id = nats.get("user_nkey"), server.get("id")
    if not isinstance(user_nkey, str) or not isinstance(server_id, str):
        raise Refused("request without user_nkey or server id")
    connect = nats.get("connect_opts") or {}
    return AuthRequest(
        server_id=server_id,
        user_nkey=user_nkey,
        client_name=str(connect.get("name") or client.get("host") or "?"),
        client_kind=str(client.get("type") or client.get("kind") or "?"),
    )


def _proven_identity(nats: dict[str, Any]) -> str | None:
    """The client's nkey if it signed the server's nonce with it; None if it sent none.
    A key without a valid proof is refused, never treated as anonymous."""
    connect = nats.get("connect_opts") or {}
    nkey = connect.get("nkey")
    if not nkey:
        if connect.get("user") or connect.get("pass") or connect.get("auth_token") or connect.get("jwt"):
            raise Refused("only nkeys are accepted")
        return None
    nonce = (nats.get("client_info") or {}).get("nonce")
    signature = connect.get("sig")
    if not identity.is_public_key(nkey):
        raise Refused("nkey is not a user public key (U…)")
    if not isinstance(nonce, str) or not nonce or not isinstance(signature, str):
        raise Refused("nkey without a signed nonce")
    try:
        raw = _nonce_signature(signature)
    except (ValueError, binascii.Error):
        raise Refused("nonce signature is not base64") from None
    if not identity.verify(nkey, nonce.encode(), raw):
        raise Refused("nonce signature does not verify")
    return str(nkey)


def _nonce_signature(text: str) -> bytes:
    """Clients send the nonce signature in URL-safe or standard base64, padded or not (the
    Go, JS and Python NATS clients differ), so this is not wire/base64url.py's strict one."""
    padded = text + "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)
