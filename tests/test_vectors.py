"""The implementation against the fixed-key vectors in tests/vectors/, the files other
languages check themselves against too."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from unibus import identity
from unibus.client import frames, roomkeys
from unibus.client.frames import FrameRejected, Reason
from unibus.identity import Identity
from unibus.wire import signing

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((VECTORS / name).read_text())
    assert cases
    return cases


@pytest.mark.parametrize("case", load("request_signatures.json"), ids=lambda c: c["subject"])
def test_request_signature_vectors(case: dict[str, Any]) -> None:
    signer = Identity.from_seed(case["seed"])
    body = base64.b64decode(case["body_b64"])
    text = signing.signing_input(case["subject"], case["timestamp_ms"], case["nonce"], body)
    assert text == case["signing_input"].encode()
    headers = signing.sign_request(
        signer, case["subject"], body, timestamp_ms=case["timestamp_ms"], nonce=case["nonce"]
    )
    assert headers == case["headers"]
    signature = signing.decode_signature(case["headers"][signing.SIGNATURE])
    assert identity.verify(case["headers"][signing.SIGNER], text, signature)
    assert not identity.verify(case["headers"][signing.SIGNER], text + b"x", signature)


@pytest.mark.parametrize("case", load("frames.json"), ids=lambda c: c["name"])
def test_frame_vectors(case: dict[str, Any]) -> None:
    f = case["fields"]
    key = bytes.fromhex(case["room_key_hex"]) if case["room_key_hex"] else None
    plaintext = bytes.fromhex(case["plaintext_hex"])
    sealed = frames.seal_frame(
        Identity.from_seed(case["sender_seed"]),
        case["room_id"],
        plaintext,
        ts_ms=f["ts"],
        epoch=f["epoch"],
        room_key=key,
        message_id=f["id"],
        nonce=bytes.fromhex(f["nonce_hex"]) if key else None,
    )
    assert sealed.signing_input(case["room_id"]).decode() == case["signing_input"]
    assert sealed.encode().hex() == case["frame_hex"]

    decoded = frames.decode(bytes.fromhex(case["frame_hex"]))
    assert (decoded.sender, decoded.ts_ms, decoded.id, decoded.epoch) == (
        f["from"],
        f["ts"],
        f["id"],
        f["epoch"],
    )
    assert (decoded.nonce.hex(), decoded.body.hex(), decoded.sig.hex()) == (
        f["nonce_hex"],
        f["body_hex"],
        f["sig_hex"],
    )
    frames.verify(decoded, case["room_id"])
    assert (frames.decrypt(decoded, key) if key else decoded.body) == plaintext
    for room, reason in case["rejected_in_room"].items():
        with pytest.raises(FrameRejected) as err:
            frames.verify(decoded, room)
        assert err.value.reason is Reason(reason)


@pytest.mark.parametrize("case", load("sealed_keys.json"), ids=lambda c: c["recipient_public"][:8])
def test_sealed_key_vectors(case: dict[str, Any]) -> None:
    recipient = Identity.from_seed(case["recipient_seed"])
    assert recipient.public_key == case["recipient_public"]
    assert bytes(roomkeys.x25519_public(case["recipient_public"])).hex() == case["x25519_public_hex"]
    assert bytes(roomkeys.x25519_secret(recipient)).hex() == case["x25519_secret_hex"]
    assert roomkeys.open_sealed(case["sealed_b64"], recipient).hex() == case["room_key_hex"]
    with pytest.raises(roomkeys.SealedKeyError):
        roomkeys.open_sealed(case["sealed_b64"], Identity.generate())


def test_a_fresh_seal_opens_to_the_same_key() -> None:
    """Sealing is randomized; what must agree across languages is what opens."""
    case = load("sealed_keys.json")[0]
    key = bytes.fromhex(case["room_key_hex"])
    blob = roomkeys.seal(key, case["recipient_public"])
    assert blob != case["sealed_b64"]
    assert roomkeys.open_sealed(blob, Identity.from_seed(case["recipient_seed"])) == key


def test_the_generator_reproduces_the_files() -> None:
    """A change to the wire format must come with regenerated vectors (and docs)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_vectors", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.request_vectors() == load("request_signatures.json")
    assert generator.frame_vectors() == load("frames.json")
    assert generator.sealed_key_vectors(load("sealed_keys.json")) == load("sealed_keys.json")
