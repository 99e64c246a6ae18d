"""The auth callout's decisions, in process: the permissions a member's rooms yield, and the
Authorizer answering nats-server's request JWTs with an injected `rooms_of` (no store, no
server). What nats-server does with the answer is tests/test_boundary.py's."""

from __future__ import annotations

import time
from typing import Any

import nkeys
import pytest

from unibus.callout import jwt
from unibus.callout.authorizer import Authorizer
from unibus.callout.grants import Grant
from unibus.callout.permissions import DISCOVERY, for_anonymous, for_member
from unibus.identity import Identity
from unibus.storage import Room, StoreUnavailable
from unibus.wire import base64url
from unibus.wire.names import CONTROL_PREFIX, INBOXES, ROOM_SUBJECT_PREFIX

SERVER = nkeys.from_seed(nkeys.encode_seed(b"s" * 32, nkeys.PREFIX_BYTE_SERVER))
ISSUER = nkeys.from_seed(nkeys.encode_seed(b"i" * 32, nkeys.PREFIX_BYTE_ACCOUNT))


def room(room_id: str, *members: str) -> Room:
    return Room(
        room_id,
        "matrix",
        f"{ROOM_SUBJECT_PREFIX}.{room_id}",
        members[0] if members else None,
        {m: "member" for m in members},
    )


def test_a_member_gets_its_rooms_its_inbox_and_the_control_plane_nothing_else() -> None:
    alice, bob = Identity.generate().public_key, Identity.generate().public_key
    rooms = [room("zeta", alice), room("alpha", alice, bob), room("bobs", bob)]
    granted = for_member(alice, rooms, CONTROL_PREFIX, ROOM_SUBJECT_PREFIX)
    assert granted.publish == (
        f"{CONTROL_PREFIX}.rooms.>",
        *DISCOVERY,
        "unibus.room.alpha",
        "unibus.room.zeta",
    )
    assert granted.subscribe == (
        f"_INBOX.{alice}.>",
        "unibus.room.alpha",
        "unibus.room.alpha.stored",
        "unibus.room.zeta",
        "unibus.room.zeta.stored",
    )
    assert not any(s.startswith("$JS") or s.startswith("$KV") for s in granted.publish + granted.subscribe)


def test_the_stored_subject_is_only_ever_subscribed_and_only_of_persisted_rooms() -> None:
    """Only the stream's republish may write a stored subject (the sequence it stamps is
    the server's); an ephemeral room has no stream, so nothing to follow."""
    alice = Identity.generate().public_key
    passing = Room("passing", "ephemeral", "unibus.room.passing", alice, {alice: "owner"})
    granted = for_member(alice, [room("kept", alice), passing], CONTROL_PREFIX, ROOM_SUBJECT_PREFIX)
    assert [s for s in granted.subscribe if s.endswith(".stored")] == ["unibus.room.kept.stored"]
    assert not any(s.endswith(".stored") for s in granted.publish)
    anonymous = for_anonymous(CONTROL_PREFIX, ROOM_SUBJECT_PREFIX)
    assert "unibus.room.*.stored" in anonymous.subscribe
    assert not any(
        s.endswith(".stored") or (s.endswith(">") and s.startswith("unibus.room")) for s in anonymous.publish
    )


def test_a_row_cannot_widen_a_grant() -> None:
    """The subject comes from the id, never the stored row; an id that is not one plain
    token (a row written past the API) grants nothing."""
    alice = Identity.generate().public_key
    doctored = Room("vault", "matrix", "unibus.room.>", alice, {alice: "owner"})
    wildcard = Room("*", "matrix", "unibus.room.*", alice, {alice: "owner"})
    granted = for_member(alice, [doctored, wildcard], CONTROL_PREFIX, ROOM_SUBJECT_PREFIX)
    assert granted.publish[-1] == "unibus.room.vault"
    assert "unibus.room.>" not in granted.subscribe and "unibus.room.*" not in granted.subscribe


def test_anonymous_gets_every_room_but_never_jetstream_or_the_static_users_inboxes() -> None:
    granted = for_anonymous(CONTROL_PREFIX, ROOM_SUBJECT_PREFIX)
    assert "unibus.room.*" in granted.publish and "unibus.room.*" in granted.subscribe
    # Its own plain inbox, never a peer's (four tokens deep) and never the static users'
    # (outside `_INBOX` altogether).
    assert "_INBOX.>" in granted.subscribe and granted.subscribe_deny == ("_INBOX.*.*.>",)
    assert not any(inbox.startswith("_INBOX") for inbox in INBOXES.values())
    assert not any(s.startswith("$JS") for s in (*granted.publish, *granted.subscribe))
    assert granted.claims()["sub"] == {"allow": list(granted.subscribe), "deny": list(granted.subscribe_deny)}


def request_jwt(connect: dict[str, Any], nonce: str = "server-nonce") -> bytes:
    user = nkeys.from_seed(nkeys.encode_seed(b"u" * 32, nkeys.PREFIX_BYTE_USER))
    claims = {
        "sub": ISSUER.public_key.decode(),
        "nats": {
            "type": "authorization_request",
            "version": 2,
            "server_id": {"id": SERVER.public_key.decode(), "name": "n1"},
            "user_nkey": user.public_key.decode(),
            "client_info": {"host": "127.0.0.1", "kind": "Client", "type": "nats", "nonce": nonce},
            "connect_opts": connect,
        },
    }
    return jwt.encode(claims, SERVER).encode()


def signed_connect(who: Identity, nonce: str = "server-nonce") -> dict[str, Any]:
    return {"nkey": who.public_key, "sig": base64url.encode(who.sign(nonce.encode())), "name": "peer"}


def authorizer(rooms: dict[str, list[Room]] | Exception, *, anonymous: bool = False) -> Authorizer:
    async def rooms_of(member: str) -> list[Room]:
        if isinstance(rooms, Exception):
            raise rooms
        return rooms.get(member, [])

    return Authorizer(ISSUER, rooms_of, CONTROL_PREFIX, ROOM_SUBJECT_PREFIX, anonymous, ttl_s=60)


async def answer(auth: Authorizer, request: bytes) -> tuple[dict[str, Any], str]:
    response, decision = await auth.answer(request)
    claims = jwt.decode(response.decode())
    assert claims["iss"] == ISSUER.public_key.decode()
    assert claims["aud"] == SERVER.public_key.decode()  # to the server that asked, for its user
    return claims, decision


async def test_a_proven_member_gets_a_user_jwt_for_its_rooms() -> None:
    alice = Identity.generate()
    auth = authorizer({alice.public_key: [room("lobby", alice.public_key)]})
    claims, decision = await answer(auth, request_jwt(signed_connect(alice)))
    user = jwt.decode(claims["nats"]["jwt"])
    assert decision == "member"
    # Named after the grant, which the revoker reads back from CONNZ (grants.py).
    assert Grant.parse(user["name"]) == Grant(alice.public_key, 0, frozenset({"lobby"}))
    assert user["aud"] == "UNIBUS"
    assert user["sub"] == claims["sub"]  # the key nats-server made for this connection
    assert "unibus.room.lobby" in user["nats"]["pub"]["allow"]
    assert 0 < user["exp"] - time.time() <= 60


@pytest.mark.parametrize(
    ("connect", "reason"),
    [
        ({}, "connect with your nkey"),
        ({"user": "admin", "pass": "secret"}, "only nkeys are accepted"),
        ({"nkey": "NABC", "sig": "AAAA"}, "nkey is not a user public key"),
        ({"nkey": Identity.generate().public_key}, "nkey without a signed nonce"),
        ({"nkey": Identity.generate().public_key, "sig": "!!!"}, "nonce signature is not base64"),
    ],
)
async def test_a_connection_that_proves_no_key_is_refused(connect: dict[str, Any], reason: str) -> None:
    claims, decision = await answer(authorizer({}), request_jwt(connect))
    assert decision == "refused" and reason in claims["nats"]["error"]
    assert "jwt" not in claims["nats"]


async def test_a_signature_over_another_nonce_or_by_another_key_is_refused() -> None:
    alice, mallory = Identity.generate(), Identity.generate()
    replayed = signed_connect(alice, nonce="an-earlier-nonce")
    stolen = {**signed_connect(mallory), "nkey": alice.public_key}
    for connect in (replayed, stolen):
        claims, decision = await answer(authorizer({}), request_jwt(connect))
        assert decision == "refused" and claims["nats"]["error"] == "nonce signature does not verify"


async def test_no_fresh_view_of_the_rooms_is_a_refusal_not_a_stale_grant() -> None:
    alice = Identity.generate()
    claims, decision = await answer(authorizer(StoreUnavailable("down")), request_jwt(signed_connect(alice)))
    assert decision == "refused" and claims["nats"]["error"] == "room storage unavailable, try again"


async def test_anonymous_only_where_the_mode_allows_it() -> None:
    assert (await answer(authorizer({}, anonymous=False), request_jwt({})))[1] == "refused"
    claims, decision = await answer(authorizer({}, anonymous=True), request_jwt({}))
    assert decision == "anonymous" and jwt.decode(claims["nats"]["jwt"])["name"] == "anonymous"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"not a jwt",
        jwt.encode({"nats": {"type": "authorization_request"}}, ISSUER).encode(),  # not from a server
        jwt.encode({"nats": {"type": "user"}}, SERVER).encode(),
    ],
)
async def test_a_request_that_is_not_a_servers_authorization_request_gets_no_answer(
    request_bytes: bytes,
) -> None:
    assert await authorizer({}).answer(request_bytes) == (None, "unreadable")


class HeldConnections:
    """An injected connection count: what the servers' events would say."""

    def __init__(self, held: int) -> None:
        self.held_now = held
        self.admissions: list[str] = []

    async def held(self, identity: str) -> int:
        return self.held_now

    def admitted(self, identity: str) -> None:
        self.admissions.append(identity)


async def test_an_identity_at_its_connection_limit_is_refused_and_one_below_it_admitted() -> None:
    alice = Identity.generate()
    counts = HeldConnections(held=3)
    auth = authorizer({})
    auth.connections, auth.max_connections = counts, 3
    claims, decision = await answer(auth, request_jwt(signed_connect(alice)))
    assert decision == "refused" and claims["nats"]["error"] == (
        "this identity holds 3 connections, the most one may (3)"
    )
    assert counts.admissions == []
    counts.held_now = 2
    assert (await answer(auth, request_jwt(signed_connect(alice))))[1] == "member"
    assert counts.admissions == [alice.public_key]  # counted until its connect event arrives


async def test_no_limit_counts_nothing() -> None:
    counts = HeldConnections(held=1_000_000)
    auth = authorizer({})
    auth.connections = counts
    assert (await answer(auth, request_jwt(signed_connect(Identity.generate()))))[1] == "member"
