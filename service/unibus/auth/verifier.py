"""Turns the `Unibus-*` headers of one request into a caller, or `AuthFailed` (a 401).

It runs before any handler and before any storage access, so an unauthenticated request
costs one signature check and nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .. import identity
from ..config import AuthMode
from ..errors import DomainError
from ..wire import signing
from ..wire.ids import NONCE as NONCE_RE
from .replay import ReplayGuard


class AuthFailed(DomainError):
    """The request does not prove who sent it, or was sent before; `reason` says which
    check failed, and is all the caller is told."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    """Who is asking. `signer` is None for an anonymous caller (dev/off modes only),
    who passes membership checks the way the original control plane allowed."""

    signer: str | None

    @property
    def anonymous(self) -> bool:
        return self.signer is None


ANONYMOUS = Caller(None)


@dataclass(frozen=True)
class Nonce:
    """A verified request's (signer, nonce), to be claimed once against replay."""

    signer: str
    nonce: str
    timestamp_ms: int


_CANONICAL = {name.lower(): name for name in signing.HEADERS}


def _signature_headers(headers: dict[str, str]) -> dict[str, str]:
    """The signature headers, and only those, under their canonical names, whatever case
    they came in (the last one wins if a name comes twice): a `unibus-signature` must count
    as a signature (dev mode would otherwise take a request with a bad one for an unsigned,
    anonymous request). Nothing else is copied: this runs on every request."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        canonical = _CANONICAL.get(name.lower())
        if canonical is not None:
            found[canonical] = value
    return found


class Verifier:
    def __init__(self, mode: AuthMode, window_s: float, replay: ReplayGuard) -> None:
        self.mode = mode
        self.window_ms = int(window_s * 1000)
        self.replay = replay

    def authenticate(
        self, subject: str, headers: dict[str, str] | None, body: bytes
    ) -> tuple[Caller, Nonce | None]:
        """Who is asking, from the headers alone (`AuthFailed` if they do not hold up), and the
        nonce still to be claimed against replay, which needs a round trip (`claim`)."""
        headers = _signature_headers(headers) if headers else {}
        if self.mode is AuthMode.OFF:
            claimed = headers.get(signing.SIGNER)
            return (Caller(claimed) if claimed and identity.is_public_key(claimed) else ANONYMOUS), None
        if not headers:
            if self.mode is AuthMode.DEV:
                return ANONYMOUS, None
            raise AuthFailed("signature required")
        nonce = self._verify(subject, headers, body)
        return Caller(nonce.signer), nonce

    async def claim(self, nonce: Nonce) -> None:
        if not await self.replay.claim(nonce.signer, nonce.nonce, nonce.timestamp_ms):
            raise AuthFailed("replayed request")

    def _verify(self, subject: str, headers: dict[str, str], body: bytes) -> Nonce:
        missing = [name for name in signing.HEADERS if not headers.get(name)]
        if missing:
            raise AuthFailed(f"missing header {missing[0]}")
        signer, ts_text, nonce = headers[signing.SIGNER], headers[signing.TIMESTAMP], headers[signing.NONCE]
        if not identity.is_public_key(signer):
            raise AuthFailed("Unibus-Signer is not an nkey user public key")
        if not ts_text.isascii() or not ts_text.isdigit() or len(ts_text) > 15:
            raise AuthFailed("Unibus-Timestamp must be unix milliseconds")
        if NONCE_RE.fullmatch(nonce) is None:
            raise AuthFailed("Unibus-Nonce must be 16-64 characters of [A-Za-z0-9_-]")
        try:
            signature = signing.decode_signature(headers[signing.SIGNATURE])
        except ValueError as exc:
            raise AuthFailed(f"Unibus-Signature: {exc}") from None
        timestamp = int(ts_text)
        if abs(time.time() * 1000 - timestamp) > self.window_ms:
            raise AuthFailed("request timestamp outside the allowed window")
        if not identity.verify(signer, signing.signing_input(subject, ts_text, nonce, body), signature):
            raise AuthFailed("bad signature")
        return Nonce(signer, nonce, timestamp)
