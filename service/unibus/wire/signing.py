"""The signed-request scheme shared by every peer (docs/protocol.md, tests/vectors/).

A signature covers the subject and a hash of the body, so a captured request cannot be
moved to another room or have its limit changed; the timestamp and nonce make it
usable once, and only for a short window.
"""

from __future__ import annotations

import binascii
import hashlib
import time

from ..identity import Identity
from . import base64url
from .ids import new_nonce

SIGNER = "Unibus-Signer"
TIMESTAMP = "Unibus-Timestamp"
NONCE = "Unibus-Nonce"
SIGNATURE = "Unibus-Signature"
HEADERS = (SIGNER, TIMESTAMP, NONCE, SIGNATURE)
CONTEXT = b"unibus-request-v1"
RECONNECT_HEADER = "Unibus-Reconnect"
"""On a reply: the signer gained a room (it created one); its connections' grants predate
it, so a client connected as the signer reconnects, and waits until it is back, before
using the room (docs/protocol.md, "Grants and revocations")."""


def signing_input(subject: str, timestamp_ms: int | str, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return b"\n".join(
        [CONTEXT, subject.encode(), str(timestamp_ms).encode(), nonce.encode(), digest.encode()]
    )


def sign_request(
    identity: Identity,
    subject: str,
    body: bytes,
    *,
    timestamp_ms: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers that authenticate one request."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    nonce = nonce or new_nonce()
    signature = identity.sign(signing_input(subject, ts, nonce, body))
    return {
        SIGNER: identity.public_key,
        TIMESTAMP: str(ts),
        NONCE: nonce,
        SIGNATURE: base64url.encode(signature),
    }


def decode_signature(text: str) -> bytes:
    try:
        raw = base64url.decode(text)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("signature is not base64url") from exc
    if len(raw) != 64:
        raise ValueError("signature must be 64 bytes")
    return raw
