"""Room keys: a random 32-byte secretbox key per epoch, sealed to each member.

A member's X25519 key is derived from the ed25519 key behind their `U…` id, so the
member id is all a sealer needs: no second key to publish or keep in sync. Sealed boxes
are anonymous and randomized; the service stores the base64 blobs and never opens them.
"""

from __future__ import annotations

import base64
import binascii

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.utils

from ..identity import Identity, verify_key

KEY_BYTES = 32


class SealedKeyError(Exception):
    """A sealed key that does not open for this identity, or is not a room key at all."""


def new_room_key() -> bytes:
    return nacl.utils.random(KEY_BYTES)


def x25519_public(member: str) -> nacl.public.PublicKey:
    ed = bytes(verify_key(member))
    return nacl.public.PublicKey(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(ed))


def x25519_secret(identity: Identity) -> nacl.public.PrivateKey:
    # libsodium's ed25519 secret key is seed || public key (64 bytes).
    ed_sk = identity.signing_key.encode() + bytes(identity.signing_key.verify_key)
    return nacl.public.PrivateKey(nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(ed_sk))


def seal(room_key: bytes, member: str) -> str:
    """The room key sealed to `member` (a `U…` id), as standard base64."""
    sealed = nacl.public.SealedBox(x25519_public(member)).encrypt(room_key)
    return base64.b64encode(bytes(sealed)).decode("ascii")


def seal_for(room_key: bytes, members: list[str] | set[str]) -> dict[str, str]:
    return {member: seal(room_key, member) for member in members}


def open_sealed(blob: str, identity: Identity) -> bytes:
    try:
        sealed = base64.b64decode(blob, validate=True)
        key = bytes(nacl.public.SealedBox(x25519_secret(identity)).decrypt(sealed))
    except (binascii.Error, ValueError, nacl.exceptions.CryptoError) as exc:
        raise SealedKeyError("sealed key does not open with this identity") from exc
    if len(key) != KEY_BYTES:
        raise SealedKeyError(f"sealed key holds {len(key)} bytes, not {KEY_BYTES}")
    return key


def open_keyring(keys: dict[str, str], identity: Identity) -> dict[int, bytes]:
    """`<id>.key`'s {"epoch": blob} → {epoch: room key}."""
    return {int(epoch): open_sealed(blob, identity) for epoch, blob in keys.items()}
