"""base64url without padding (RFC 4648 §5), the one encoding of binary in text on the wire:
the `Unibus-Signature` header and the segments of the JWTs the auth callout exchanges."""

from __future__ import annotations

import base64
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode(text: str) -> bytes:
    """Raises ValueError (binascii.Error is one) for padding or a character outside the
    alphabet: a peer that pads, or sends standard base64, is told so, not half-understood."""
    if "=" in text:
        raise ValueError("padding is not allowed")
    if _ALPHABET.fullmatch(text) is None:
        raise ValueError("not in the base64url alphabet")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
