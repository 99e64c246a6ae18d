"""The NATS JWTs the callout reads and writes, in process: a token verifies against its own
issuer of a known kind and not after it expires; anything else is InvalidToken."""

from __future__ import annotations

import time

import nkeys
import pytest

from unibus.callout import jwt
from unibus.wire import base64url

ACCOUNT = nkeys.from_seed(nkeys.encode_seed(b"a" * 32, nkeys.PREFIX_BYTE_ACCOUNT))
SERVER = nkeys.from_seed(nkeys.encode_seed(b"s" * 32, nkeys.PREFIX_BYTE_SERVER))


def test_a_token_round_trips_with_issuer_time_and_id() -> None:
    claims = jwt.decode(jwt.encode({"sub": "UX", "nats": {"type": "user"}}, ACCOUNT))
    assert claims["iss"] == ACCOUNT.public_key.decode() and claims["sub"] == "UX"
    assert abs(claims["iat"] - time.time()) < 60 and len(claims["jti"]) == 52  # base32 of SHA-256


def test_expiry() -> None:
    token = jwt.encode({"exp": 1_000}, ACCOUNT)
    assert jwt.decode(token, now=999)["exp"] == 1_000
    with pytest.raises(jwt.InvalidToken, match="expired"):
        jwt.decode(token, now=1_001)


def tampered(token: str, **changes: object) -> str:
    header, _, signature = token.split(".")
    body = {**jwt.decode(token), **changes}
    return ".".join((header, base64url.encode(jwt._json(body)), signature))


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("a.b", "not a JWT"),
        ("!!.!!.!!", "not a JWT"),
        (jwt.encode({"sub": "UX"}, SERVER).replace(".", "..", 1), "not a JWT"),
        (tampered(jwt.encode({"sub": "UX"}, ACCOUNT), sub="UY"), "bad signature"),
        (tampered(jwt.encode({"sub": "UX"}, ACCOUNT), iss=SERVER.public_key.decode()), "bad signature"),
        (tampered(jwt.encode({"sub": "UX"}, ACCOUNT), iss="Xnot-a-key"), "bad issuer"),
    ],
)
def test_anything_else_is_an_invalid_token(token: str, reason: str) -> None:
    with pytest.raises(jwt.InvalidToken, match=reason):
        jwt.decode(token)


def test_another_algorithm_is_refused() -> None:
    token = jwt.encode({"sub": "UX"}, ACCOUNT)
    _, claims, signature = token.split(".")
    header = base64url.encode(b'{"typ":"JWT","alg":"HS256"}')
    with pytest.raises(jwt.InvalidToken, match="not an nkey-signed JWT"):
        jwt.decode(".".join((header, claims, signature)))
