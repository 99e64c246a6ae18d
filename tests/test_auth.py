"""Signed requests: 401 for everything that is not a fresh, valid signature of this exact request."""

from __future__ import annotations

import json
import time

import pytest
from nats.aio.client import Client

from unibus.client import ControlClient, Identity, Unauthorized
from unibus.config import AuthMode
from unibus.natsserver import NatsServer
from unibus.runner import Running
from unibus.wire.names import nonce_subject
from unibus.wire.signing import SIGNATURE, SIGNER, TIMESTAMP, sign_request

from harness.boundary import connect_as
from harness.plane import StartPlane

SUBJECT = "$UNIBUS.CTL.rooms.signed.history"


async def raw(
    nc: Client, subject: str, body: bytes, headers: dict[str, str] | None
) -> tuple[str | None, str]:
    reply = await nc.request(subject, body, timeout=5, headers=headers)
    h = reply.headers or {}
    return h.get("Nats-Service-Error-Code"), h.get("Nats-Service-Error", "")


@pytest.fixture
async def room(as_alice: ControlClient) -> str:
    await as_alice.create_room("signed")
    return "signed"


async def test_unsigned_is_401_under_enforce(nc: Client, room: str) -> None:
    assert await raw(nc, SUBJECT, b"", None) == ("401", "signature required")


async def test_valid_signature_is_accepted(nc: Client, alice: Identity, room: str) -> None:
    code, _ = await raw(nc, SUBJECT, b"limit=5", sign_request(alice, SUBJECT, b"limit=5"))
    assert code is None


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda h: h.pop(SIGNATURE), "missing header Unibus-Signature"),
        (lambda h: h.update({SIGNATURE: "not base64!"}), "Unibus-Signature: signature is not base64url"),
        (lambda h: h.update({SIGNATURE: h[SIGNATURE][:-4]}), "Unibus-Signature: signature must be 64 bytes"),
        (lambda h: h.update({SIGNER: "UNOTAKEY"}), "Unibus-Signer is not an nkey user public key"),
        (lambda h: h.update({SIGNER: Identity.generate().public_key}), "bad signature"),
        (lambda h: h.update({TIMESTAMP: "soon"}), "Unibus-Timestamp must be unix milliseconds"),
        (
            lambda h: h.update({"Unibus-Nonce": "short"}),
            "Unibus-Nonce must be 16-64 characters of [A-Za-z0-9_-]",
        ),
    ],
)
async def test_bad_headers_are_401(nc: Client, alice: Identity, room: str, tamper, message: str) -> None:
    headers = sign_request(alice, SUBJECT, b"")
    tamper(headers)
    assert await raw(nc, SUBJECT, b"", headers) == ("401", message)


@pytest.mark.parametrize("skew_s", [-121, 121, -3600 * 24])
async def test_expired_or_future_timestamp_is_401(
    nc: Client, alice: Identity, room: str, skew_s: int
) -> None:
    headers = sign_request(alice, SUBJECT, b"", timestamp_ms=int((time.time() + skew_s) * 1000))
    assert await raw(nc, SUBJECT, b"", headers) == ("401", "request timestamp outside the allowed window")


async def test_replay_is_401(nc: Client, alice: Identity, room: str) -> None:
    headers = sign_request(alice, SUBJECT, b"limit=1")
    assert (await raw(nc, SUBJECT, b"limit=1", headers))[0] is None
    assert await raw(nc, SUBJECT, b"limit=1", headers) == ("401", "replayed request")


async def test_signature_binds_subject_and_body(as_alice: ControlClient, nc: Client, alice: Identity) -> None:
    await as_alice.create_room("other")
    await as_alice.create_room("signed")
    headers = sign_request(alice, SUBJECT, b"limit=1")
    moved = "$UNIBUS.CTL.rooms.other.history"
    assert await raw(nc, moved, b"limit=1", headers) == ("401", "bad signature")
    assert await raw(nc, SUBJECT, b"limit=1000", headers) == ("401", "bad signature")


async def test_dev_mode_allows_unsigned_but_rejects_bad(
    start_plane: StartPlane, nc: Client, alice: Identity
) -> None:
    await start_plane(auth_mode=AuthMode.DEV)
    anonymous = ControlClient(nc, None)
    await anonymous.create_room("devroom", owner=alice.public_key)
    assert (await anonymous.history("devroom")).frames == []
    headers = sign_request(alice, "$UNIBUS.CTL.rooms.devroom.history", b"")
    headers[SIGNATURE] = sign_request(alice, "elsewhere", b"")[SIGNATURE]
    assert await raw(nc, "$UNIBUS.CTL.rooms.devroom.history", b"", headers) == ("401", "bad signature")
    # In another case the headers are still a signature, never an anonymous request.
    lowered = {name.lower(): value for name, value in headers.items()}
    assert await raw(nc, "$UNIBUS.CTL.rooms.devroom.history", b"", lowered) == ("401", "bad signature")
    good = sign_request(alice, "$UNIBUS.CTL.rooms.devroom.info", b"")
    upper = {name.upper(): value for name, value in good.items()}
    reply = await nc.request("$UNIBUS.CTL.rooms.devroom.info", b"", timeout=5, headers=upper)
    assert json.loads(reply.data)["role"] == "owner"  # verified as alice, not anonymous


async def test_off_mode_verifies_nothing(
    start_plane: StartPlane, nc: Client, alice: Identity, bob: Identity
) -> None:
    await start_plane(auth_mode=AuthMode.OFF)
    claimed = {SIGNER: bob.public_key, SIGNATURE: "garbage"}
    reply = await nc.request("$UNIBUS.CTL.rooms.create", b'{"id":"offroom"}', timeout=5, headers=claimed)
    assert not (reply.headers or {}).get("Nats-Service-Error-Code")
    info = await ControlClient(nc, None).info("offroom")
    assert info["owner"] == bob.public_key


async def test_unsigned_create_in_dev_must_name_a_valid_owner(start_plane: StartPlane, nc: Client) -> None:
    await start_plane(auth_mode=AuthMode.DEV)
    from unibus.client import BadRequest

    with pytest.raises(BadRequest, match="owner"):
        await ControlClient(nc, None).create_room("ownerless")


async def test_enforce_rejects_before_touching_storage(plane: Running, nc: Client) -> None:
    """An unsigned create under enforce changes nothing."""
    await raw(nc, "$UNIBUS.CTL.rooms.create", b'{"id":"sneaky"}', None)
    assert await plane.plane.store.get("sneaky") is None
    with pytest.raises(Unauthorized):
        await ControlClient(nc, None).list_rooms()


async def test_a_read_answered_to_the_signers_own_inbox_writes_no_replay_claim(
    nats_server: NatsServer, nc: Client, alice: Identity, room: str
) -> None:
    """Under the boundary only the signer's connections receive replies under its inbox,
    so a read sent there is answered without a replay claim (auth/replies.py), even
    replayed; a read relayed through another user's inbox (the shim's, here the
    inspector's) is claimed, and its replay refused, as before."""
    claims = await nc.subscribe(nonce_subject("$UNIBUS.CTL"))  # the replay guard's writes
    peer = await connect_as(nats_server.url, alice)
    try:
        own = sign_request(alice, SUBJECT, b"limit=1")
        assert await raw(peer.nc, SUBJECT, b"limit=1", own) == (None, "")
        assert await raw(peer.nc, SUBJECT, b"limit=1", own) == (None, "")
    finally:
        await peer.nc.close()
    relayed = sign_request(alice, SUBJECT, b"limit=1")
    assert await raw(nc, SUBJECT, b"limit=1", relayed) == (None, "")
    assert await raw(nc, SUBJECT, b"limit=1", relayed) == ("401", "replayed request")
    # Claims go out in order from one connection: once the relayed read's are seen, an
    # earlier claim of the own-inbox read would have been seen before them.
    ids = [(await claims.next_msg(timeout=5)).headers["Nats-Msg-Id"] for _ in range(2)]  # type: ignore[index]
    assert ids == [f"{alice.public_key}.{relayed['Unibus-Nonce']}"] * 2


async def test_a_read_replayed_to_another_inbox_is_refused(
    nats_server: NatsServer, alice: Identity, room: str
) -> None:
    """The one place a replayer can receive a captured read is its own inbox: a read
    whose reply names another identity's inbox is refused, captured or not."""
    peer = await connect_as(nats_server.url, alice)
    replayer = await connect_as(nats_server.url, Identity.generate())
    try:
        captured = sign_request(alice, SUBJECT, b"limit=1")
        assert await raw(peer.nc, SUBJECT, b"limit=1", captured) == (None, "")
        refused = ("403", "a read's reply must go to the signer's own inbox")
        assert await raw(replayer.nc, SUBJECT, b"limit=1", captured) == refused
        # Not even first: a read aimed at someone else's inbox is refused before any claim.
        fresh = sign_request(alice, SUBJECT, b"limit=1")
        assert await raw(replayer.nc, SUBJECT, b"limit=1", fresh) == refused
        assert await raw(peer.nc, SUBJECT, b"limit=1", fresh) == (None, "")
    finally:
        await peer.nc.close()
        await replayer.nc.close()
