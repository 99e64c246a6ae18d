"""Identities are ed25519 keys written as NATS nkeys: a user seed `SU…` and its public key `U…`.

The public key is the member id everywhere (room rows, signed headers, frames), so a peer
can reuse the nkey tooling it already has for NATS itself.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import nacl.exceptions
import nacl.signing
import nkeys

_USER_PREFIX = nkeys.PREFIX_BYTE_USER


class InvalidKey(ValueError):
    pass


def encode_public(raw: bytes, prefix: int = _USER_PREFIX) -> str:
    """32 raw ed25519 public-key bytes → `U…` (or another nkey kind: base32 of prefix byte,
    key and crc16)."""
    body = bytes([prefix]) + raw
    crc = nkeys.crc16(bytearray(body)).to_bytes(2, "little")
    return base64.b32encode(body + crc).decode().rstrip("=")


@lru_cache(maxsize=65536)
def verify_key(public: str, prefix: int = _USER_PREFIX) -> nacl.signing.VerifyKey:
    """`U…` (or the nkey kind `prefix` names: `N…` servers, `A…` accounts) → a verifying key;
    cached because every signed request and every connection decodes its key."""
    letter = _letter(prefix)
    if not isinstance(public, str) or len(public) != 56 or not public.startswith(letter):
        raise InvalidKey(f"not an nkey public key of kind {letter}")
    try:
        data = base64.b32decode(public)
    except (binascii.Error, ValueError) as exc:
        raise InvalidKey("not base32") from exc
    body, crc = data[:-2], data[-2:]
    if body[0] != prefix or nkeys.crc16(bytearray(body)).to_bytes(2, "little") != crc:
        raise InvalidKey("bad nkey prefix or checksum")
    return nacl.signing.VerifyKey(body[1:])


@cache
def _letter(prefix: int) -> str:
    """The first character of every nkey of kind `prefix` (`U` for users)."""
    return encode_public(bytes(32), prefix)[0]


def is_public_key(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        verify_key(value)
    except (InvalidKey, TypeError):
        return False
    return True


def verify(public: str, message: bytes, signature: bytes, prefix: int = _USER_PREFIX) -> bool:
    try:
        verify_key(public, prefix).verify(message, signature)
    except (InvalidKey, nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """A signing identity: the seed stays in this object, the public key is shared freely."""

    signing_key: nacl.signing.SigningKey
    public_key: str

    @classmethod
    def generate(cls) -> Identity:
        return cls.from_raw_seed(nacl.signing.SigningKey.generate().encode())

    @classmethod
    def from_raw_seed(cls, raw: bytes) -> Identity:
        key = nacl.signing.SigningKey(raw)
        return cls(key, encode_public(bytes(key.verify_key)))

    @classmethod
    def from_seed(cls, seed: str | bytes) -> Identity:
        text = seed.encode() if isinstance(seed, str) else seed
        try:
            prefix, raw = nkeys.decode_seed(text.strip())
        except Exception as exc:  # nkeys raises its own error types
            raise InvalidKey("not an nkey seed") from exc
        if prefix != _USER_PREFIX:
            raise InvalidKey("not a user seed (SU…)")
        return cls.from_raw_seed(bytes(raw))

    @property
    def seed(self) -> str:
        return bytes(nkeys.encode_seed(self.signing_key.encode(), _USER_PREFIX)).decode()

    def sign(self, message: bytes) -> bytes:
        return bytes(self.signing_key.sign(message).signature)

    def save(self, path: str | Path) -> None:
        """Write the seed with 0600 permissions, created that way (never briefly readable)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.seed + "\n")
        os.chmod(target, 0o600)

    @classmethod
    def load(cls, path: str | Path) -> Identity:
        return cls.from_seed(Path(path).read_text())


def inbox_prefix(public: str) -> str:
    """Where replies to this identity's connection arrive: `_INBOX.<U…>`.

    Under the trust boundary (docs/security.md) a connection may subscribe only below its
    own identity's prefix, so nobody else can read the replies it is sent."""
    return f"_INBOX.{public}"


def notice_subject(public: str) -> str:
    """Where the control plane tells this identity that it gained or lost a room
    (`{"event": "granted"|"revoked", "room": id}`, docs/protocol.md): below its own inbox
    prefix, which its connections may subscribe to whatever rooms they hold."""
    return f"{inbox_prefix(public)}.unibus.notice"
