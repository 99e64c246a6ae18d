"""NATS JWTs: the small subset auth callout needs, on top of nkeys.

A NATS JWT is `base64url(header).base64url(claims).base64url(ed25519 signature)` with the
header `{"typ":"JWT","alg":"ed25519-nkey"}`, signed by the nkey named in `iss`. The
server sends an authorization request signed by its own server key (`N…`) and takes back
an authorization response and the user JWT inside it, both signed by the callout issuer
(an account key, `A…`). Written here rather than taken from a library: the Python JWT
packages for NATS either lack the authorization claims (nats-jwt) or are a single early
release (nats-callout); the format is forty lines and nats-server is the test of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from typing import Any

import nkeys

from ..identity import InvalidKey, verify
from ..wire import base64url

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_PREFIXES = {
    "N": nkeys.PREFIX_BYTE_SERVER,
    "A": nkeys.PREFIX_BYTE_ACCOUNT,
    "U": nkeys.PREFIX_BYTE_USER,
    "O": nkeys.PREFIX_BYTE_OPERATOR,
}


_NO_JTI = b'"jti":""'


class InvalidToken(ValueError):
    pass


def encode(claims: dict[str, Any], issuer: nkeys.KeyPair) -> str:
    """Sign `claims` as `issuer`: sets `iss`, `iat` (unless given) and `jti` the way the Go
    library does (base32 of the SHA-256 of the claims without `jti`).

    The claims are serialized once, with `jti` empty, and the hash is put in its place: a
    quote inside any JSON string is escaped, so `"jti":""` occurs only as the top-level
    key itself (every connect signs two of these, so each serialization counts)."""
    body = {**claims, "iss": issuer.public_key.decode(), "jti": ""}
    body.setdefault("iat", int(time.time()))
    unsigned = _json(body)
    jti = base64.b32encode(hashlib.sha256(unsigned).digest()).rstrip(b"=")
    signing_input = _HEADER_SEGMENT + base64url.encode(unsigned.replace(_NO_JTI, b'"jti":"' + jti + b'"', 1))
    signature = issuer.sign(signing_input.encode())
    return signing_input + "." + base64url.encode(signature)


def decode(token: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a token whose signature verifies against its own `iss`, of a kind in
    `_PREFIXES`, and that has not expired. Anything else raises InvalidToken."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a JWT")
    try:
        header = json.loads(base64url.decode(parts[0]))
        claims = json.loads(base64url.decode(parts[1]))
        signature = base64url.decode(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise InvalidToken("not a JWT") from exc
    if not isinstance(header, dict) or header.get("alg") != _HEADER["alg"] or not isinstance(claims, dict):
        raise InvalidToken("not an nkey-signed JWT")
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or _PREFIXES.get(issuer[:1]) is None:
        raise InvalidToken("bad issuer")
    prefix = _PREFIXES[issuer[:1]]
    try:
        if not verify(issuer, (parts[0] + "." + parts[1]).encode(), signature, prefix):
            raise InvalidToken("bad signature")
    except InvalidKey as exc:
        raise InvalidToken("bad issuer") from exc
    expires = claims.get("exp")
    if isinstance(expires, int) and expires and expires < (now if now is not None else time.time()):
        raise InvalidToken("expired")
    return claims


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


_HEADER_SEGMENT = base64url.encode(_json(_HEADER)) + "."
