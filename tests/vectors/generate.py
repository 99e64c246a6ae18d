"""Regenerates the fixed-key test vectors in this directory from the Python implementation.

    .venv/bin/python tests/vectors/generate.py

Everything is derived from fixed seeds, so the output is byte-for-byte stable, except a
sealed box, which is randomized by design: an existing sealed blob is kept as long as
it still opens to the vector's key, so rerunning changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from unibus.client import frames, roomkeys
from unibus.identity import Identity
from unibus.wire.signing import sign_request, signing_input

HERE = Path(__file__).parent


def fixed_identity(name: str) -> Identity:
    return Identity.from_raw_seed(hashlib.sha256(f"unibus-vector-{name}".encode()).digest())


ALICE = fixed_identity("alice")
BOB = fixed_identity("bob")
ROOM_KEY = hashlib.sha256(b"unibus-vector-room-key").digest()


def request_vectors() -> list[dict[str, Any]]:
    cases = [
        ("$UNIBUS.CTL.rooms.list", b""),
        ("$UNIBUS.CTL.rooms.create", b'{"id":"lobby","encrypted":false}'),
        ("$UNIBUS.CTL.rooms.lobby.history", b"limit=50&before=1201"),
        ("$UNIBUS.CTL.rooms.lobby.members.add", '{"member":"U…","name":"café"}'.encode()),
    ]
    out = []
    for i, (subject, body) in enumerate(cases):
        ts, nonce = 1764400000000 + i, f"vector-nonce-{i:04d}"
        headers = sign_request(ALICE, subject, body, timestamp_ms=ts, nonce=nonce)
        out.append(
            {
                "seed": ALICE.seed,
                "subject": subject,
                "timestamp_ms": ts,
                "nonce": nonce,
                "body_b64": base64.b64encode(body).decode(),
                "signing_input": signing_input(subject, ts, nonce, body).decode(),
                "headers": headers,
            }
        )
    return out


def frame_vectors() -> list[dict[str, Any]]:
    encrypted = frames.seal_frame(
        ALICE,
        "lobby",
        "hello, bob ☃".encode(),
        ts_ms=1764400000123,
        epoch=3,
        room_key=ROOM_KEY,
        message_id="msg-0000000000000001",
        nonce=bytes(range(24)),
    )
    plain = frames.seal_frame(
        ALICE, "town-square", b"in the clear", ts_ms=1764400000456, message_id="msg-0000000000000002"
    )
    return [
        _frame_case("encrypted", "lobby", encrypted, "hello, bob ☃".encode(), ROOM_KEY),
        _frame_case("plaintext", "town-square", plain, b"in the clear", None),
    ]


def _frame_case(
    name: str, room: str, frame: frames.Frame, plaintext: bytes, key: bytes | None
) -> dict[str, Any]:
    return {
        "name": name,
        "sender_seed": ALICE.seed,
        "room_id": room,
        "room_key_hex": key.hex() if key else None,
        "fields": {
            "v": frame.v,
            "from": frame.sender,
            "ts": frame.ts_ms,
            "id": frame.id,
            "epoch": frame.epoch,
            "nonce_hex": frame.nonce.hex(),
            "body_hex": frame.body.hex(),
            "sig_hex": frame.sig.hex(),
        },
        "plaintext_hex": plaintext.hex(),
        "signing_input": frame.signing_input(room).decode(),
        "frame_hex": frame.encode().hex(),
        "rejected_in_room": {"lobby-2": "bad-signature"},
    }


def sealed_key_vectors(previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    blob = next((c["sealed_b64"] for c in previous if _opens(c.get("sealed_b64"))), None)
    return [
        {
            "recipient_seed": BOB.seed,
            "recipient_public": BOB.public_key,
            "x25519_public_hex": bytes(roomkeys.x25519_public(BOB.public_key)).hex(),
            "x25519_secret_hex": bytes(roomkeys.x25519_secret(BOB)).hex(),
            "sealed_b64": blob or roomkeys.seal(ROOM_KEY, BOB.public_key),
            "room_key_hex": ROOM_KEY.hex(),
        }
    ]


def _opens(blob: object) -> bool:
    try:
        return isinstance(blob, str) and roomkeys.open_sealed(blob, BOB) == ROOM_KEY
    except roomkeys.SealedKeyError:
        return False


def write(name: str, cases: list[dict[str, Any]]) -> None:
    (HERE / name).write_text(json.dumps(cases, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    write("request_signatures.json", request_vectors())
    write("frames.json", frame_vectors())
    sealed_path = HERE / "sealed_keys.json"
    previous = json.loads(sealed_path.read_text()) if sealed_path.exists() else []
    write("sealed_keys.json", sealed_key_vectors(previous))


if __name__ == "__main__":
    main()
