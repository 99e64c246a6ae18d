"""The frame: what a peer publishes on a room's subject and what the room's stream stores.

Encrypt-then-sign: the body is secretbox ciphertext under the room key of `epoch` (or the
plaintext when the room is not encrypted, `epoch` 0), and the sender's ed25519 signature
covers every field plus the room id. The room id is not in the frame: the receiver
supplies the room it read the frame from, so a frame replayed into another room fails
its signature. The exact bytes signed are in docs/protocol.md and tests/vectors/.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, replace
from typing import Any

import msgpack
import nacl.exceptions
import nacl.secret
import nacl.utils

from .. import identity
from ..identity import Identity
from ..wire.ids import NONCE as ID_RE
from ..wire.ids import new_nonce

VERSION = 1
CONTEXT = b"unibus-frame-v1"
NONCE_BYTES = nacl.secret.SecretBox.NONCE_SIZE
FIELDS = ("v", "from", "ts", "id", "epoch", "nonce", "body", "sig")


class Reason(enum.StrEnum):
    """Why a frame was rejected; stable strings, shared with other peers' docs."""

    MALFORMED = "malformed"
    VERSION = "unsupported-version"
    BAD_SIGNATURE = "bad-signature"
    NOT_MEMBER = "not-a-member"
    PLAINTEXT_IN_ENCRYPTED_ROOM = "plaintext-in-encrypted-room"
    CIPHERTEXT_IN_PLAIN_ROOM = "ciphertext-in-plain-room"
    NO_KEY = "no-key-for-epoch"
    DECRYPT_FAILED = "decrypt-failed"


class FrameRejected(Exception):
    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Frame:
    sender: str
    ts_ms: int
    id: str
    epoch: int
    nonce: bytes
    body: bytes
    sig: bytes = b""
    v: int = VERSION

    def signing_input(self, room_id: str) -> bytes:
        return signing_input(room_id, self.sender, self.ts_ms, self.id, self.epoch, self.nonce, self.body)

    def encode(self) -> bytes:
        """msgpack map, keys in FIELDS order, bytes as bin: the canonical encoding."""
        packed: bytes = msgpack.packb(
            {
                "v": self.v,
                "from": self.sender,
                "ts": self.ts_ms,
                "id": self.id,
                "epoch": self.epoch,
                "nonce": self.nonce,
                "body": self.body,
                "sig": self.sig,
            },
            use_bin_type=True,
        )
        return packed


def signing_input(
    room_id: str, sender: str, ts_ms: int, message_id: str, epoch: int, nonce: bytes, body: bytes
) -> bytes:
    return b"\n".join(
        [
            CONTEXT,
            room_id.encode(),
            sender.encode(),
            str(ts_ms).encode(),
            message_id.encode(),
            str(epoch).encode(),
            nonce.hex().encode(),
            hashlib.sha256(body).hexdigest().encode(),
        ]
    )


def seal_frame(
    sender: Identity,
    room_id: str,
    data: bytes,
    *,
    ts_ms: int,
    epoch: int = 0,
    room_key: bytes | None = None,
    message_id: str | None = None,
    nonce: bytes | None = None,
) -> Frame:
    """A signed frame; encrypted under `room_key` when one is given (then `epoch` >= 1)."""
    message_id = message_id or new_nonce()
    if room_key is None:
        if epoch != 0:
            raise ValueError("a plaintext frame has epoch 0")
        nonce, body = b"", data
    else:
        if epoch < 1:
            raise ValueError("an encrypted frame has epoch >= 1")
        nonce = nonce if nonce is not None else nacl.utils.random(NONCE_BYTES)
        body = bytes(nacl.secret.SecretBox(room_key).encrypt(data, nonce).ciphertext)
    unsigned = Frame(sender.public_key, ts_ms, message_id, epoch, nonce, body)
    return replace(unsigned, sig=sender.sign(unsigned.signing_input(room_id)))


def decode(raw: bytes) -> Frame:
    """Parse and type-check a frame; the signature is not checked here (see `verify`)."""
    try:
        value: Any = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise FrameRejected(Reason.MALFORMED, "not msgpack") from exc
    if not isinstance(value, dict):
        raise FrameRejected(Reason.MALFORMED, "not a msgpack map")
    version = value.get("v")
    if version != VERSION:
        raise FrameRejected(Reason.VERSION, f"version {version!r}")
    missing = [name for name in FIELDS if name not in value]
    if missing:
        raise FrameRejected(Reason.MALFORMED, f"missing {missing[0]!r}")
    frame = Frame(
        sender=value["from"],
        ts_ms=value["ts"],
        id=value["id"],
        epoch=value["epoch"],
        nonce=value["nonce"],
        body=value["body"],
        sig=value["sig"],
    )
    _check_types(frame)
    return frame


def _check_types(frame: Frame) -> None:
    checks = (
        (isinstance(frame.sender, str), "from must be a string"),
        (_is_uint(frame.ts_ms), "ts must be a non-negative integer"),
        (isinstance(frame.id, str) and ID_RE.fullmatch(frame.id) is not None, "bad message id"),
        (_is_uint(frame.epoch), "epoch must be a non-negative integer"),
        (isinstance(frame.nonce, bytes), "nonce must be bin"),
        (isinstance(frame.body, bytes), "body must be bin"),
        (isinstance(frame.sig, bytes) and len(frame.sig) == 64, "sig must be 64 bytes of bin"),
    )
    for ok, message in checks:
        if not ok:
            raise FrameRejected(Reason.MALFORMED, message)


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify(frame: Frame, room_id: str) -> None:
    """The signature must be the claimed sender's, over this frame in this room."""
    if not identity.is_public_key(frame.sender):
        raise FrameRejected(Reason.BAD_SIGNATURE, "sender is not an nkey user public key")
    if not identity.verify(frame.sender, frame.signing_input(room_id), frame.sig):
        raise FrameRejected(Reason.BAD_SIGNATURE, f"signature does not verify for {frame.sender}")


def decrypt(frame: Frame, room_key: bytes) -> bytes:
    if len(frame.nonce) != NONCE_BYTES:
        raise FrameRejected(Reason.MALFORMED, f"nonce must be {NONCE_BYTES} bytes")
    try:
        return bytes(nacl.secret.SecretBox(room_key).decrypt(frame.body, frame.nonce))
    except nacl.exceptions.CryptoError:
        detail = f"does not open under the epoch {frame.epoch} key"
        raise FrameRejected(Reason.DECRYPT_FAILED, detail) from None
