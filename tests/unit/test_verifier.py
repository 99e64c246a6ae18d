"""The signed-request check and the in-process replay guard, in process: every way a request
can fail to prove its sender, each answered with its own reason (docs/protocol.md,
"Signed requests"), and no way to get past the check by changing what was signed."""

from __future__ import annotations

import time

import pytest

from unibus.auth import ANONYMOUS, AuthFailed, Caller, LocalNonces, Verifier
from unibus.config import AuthMode
from unibus.identity import Identity
from unibus.wire.signing import NONCE, SIGNATURE, SIGNER, TIMESTAMP, sign_request

SUBJECT = "$UNIBUS.CTL.rooms.lobby.history"
BODY = b"limit=5"
WINDOW_S = 120.0


def verifier(mode: AuthMode = AuthMode.ENFORCE) -> Verifier:
    return Verifier(mode, WINDOW_S, LocalNonces(WINDOW_S))


@pytest.fixture
def alice() -> Identity:
    return Identity.generate()


def refusal(v: Verifier, headers: dict[str, str] | None, subject: str = SUBJECT, body: bytes = BODY) -> str:
    with pytest.raises(AuthFailed) as caught:
        v.authenticate(subject, headers, body)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


def test_a_signed_request_yields_its_signer_and_a_nonce_to_claim(alice: Identity) -> None:
    headers = sign_request(alice, SUBJECT, BODY)
    caller, nonce = verifier().authenticate(SUBJECT, headers, BODY)
    assert caller == Caller(alice.public_key) and not caller.anonymous
    assert nonce is not None and (nonce.signer, nonce.nonce) == (alice.public_key, headers[NONCE])


def test_header_names_count_whatever_their_case(alice: Identity) -> None:
    headers = {name.lower(): value for name, value in sign_request(alice, SUBJECT, BODY).items()}
    assert verifier().authenticate(SUBJECT, headers, BODY)[0].signer == alice.public_key
    # ...so a bad lower-case signature is a bad signature in dev mode, not an anonymous caller
    headers["unibus-signature"] = headers["unibus-signature"][::-1]
    assert refusal(verifier(AuthMode.DEV), headers) in {
        "bad signature",
        "Unibus-Signature: signature is not base64url",
    }


@pytest.mark.parametrize(
    ("moved", "change"),
    [
        ("subject", lambda s, b: ("$UNIBUS.CTL.rooms.other.history", b)),
        ("body", lambda s, b: (s, b"limit=1000")),
    ],
)
def test_a_signature_does_not_cover_another_subject_or_body(
    alice: Identity, moved: str, change: object
) -> None:
    headers = sign_request(alice, SUBJECT, BODY)
    subject, body = change(SUBJECT, BODY)  # type: ignore[operator]
    assert refusal(verifier(), headers, subject, body) == "bad signature", moved


def test_each_malformed_header_is_named(alice: Identity) -> None:
    good = sign_request(alice, SUBJECT, BODY)
    v = verifier()
    for name in (SIGNER, TIMESTAMP, NONCE, SIGNATURE):
        assert refusal(v, {k: x for k, x in good.items() if k != name}) == f"missing header {name}"
    assert refusal(v, {**good, SIGNER: "NABC"}) == "Unibus-Signer is not an nkey user public key"
    assert refusal(v, {**good, TIMESTAMP: "yesterday"}) == "Unibus-Timestamp must be unix milliseconds"
    assert refusal(v, {**good, TIMESTAMP: "9" * 16}) == "Unibus-Timestamp must be unix milliseconds"
    assert refusal(v, {**good, NONCE: "short"}) == "Unibus-Nonce must be 16-64 characters of [A-Za-z0-9_-]"
    assert (
        refusal(v, {**good, SIGNATURE: good[SIGNATURE] + "="})
        == "Unibus-Signature: signature is not base64url"
    )
    assert (
        refusal(v, {**good, SIGNATURE: good[SIGNATURE][:40]})
        == "Unibus-Signature: signature must be 64 bytes"
    )


def test_a_timestamp_outside_the_window_is_refused_either_way(alice: Identity) -> None:
    now_ms = int(time.time() * 1000)
    for skew_ms in (-int(WINDOW_S * 1000) - 5000, int(WINDOW_S * 1000) + 5000):
        headers = sign_request(alice, SUBJECT, BODY, timestamp_ms=now_ms + skew_ms)
        assert refusal(verifier(), headers) == "request timestamp outside the allowed window"


def test_another_key_cannot_sign_for_the_signer(alice: Identity) -> None:
    forged = {**sign_request(Identity.generate(), SUBJECT, BODY), SIGNER: alice.public_key}
    assert refusal(verifier(), forged) == "bad signature"


def test_unsigned_requests_by_mode() -> None:
    assert refusal(verifier(AuthMode.ENFORCE), None) == "signature required"
    assert verifier(AuthMode.DEV).authenticate(SUBJECT, {}, BODY) == (ANONYMOUS, None)
    assert verifier(AuthMode.OFF).authenticate(SUBJECT, {}, BODY) == (ANONYMOUS, None)


def test_off_trusts_a_claimed_signer_but_only_a_well_formed_one(alice: Identity) -> None:
    off = verifier(AuthMode.OFF)
    assert off.authenticate(SUBJECT, {SIGNER: alice.public_key}, BODY) == (Caller(alice.public_key), None)
    assert off.authenticate(SUBJECT, {SIGNER: "anyone"}, BODY) == (ANONYMOUS, None)


def test_dev_mode_still_refuses_a_present_but_bad_signature(alice: Identity) -> None:
    headers = {**sign_request(alice, SUBJECT, BODY), SIGNATURE: "A" * 86}
    assert refusal(verifier(AuthMode.DEV), headers) == "bad signature"


async def test_a_request_is_accepted_once(alice: Identity) -> None:
    v = verifier()
    headers = sign_request(alice, SUBJECT, BODY)
    _, nonce = v.authenticate(SUBJECT, headers, BODY)
    assert nonce is not None
    await v.claim(nonce)
    with pytest.raises(AuthFailed, match="replayed request"):
        await v.claim(nonce)


async def test_local_nonces_are_per_signer_and_forgotten_after_the_window() -> None:
    guard = LocalNonces(window_s=1.0)
    now_ms = int(time.time() * 1000)
    assert await guard.claim("UA", "n" * 16, now_ms)
    assert not await guard.claim("UA", "n" * 16, now_ms)
    assert await guard.claim("UB", "n" * 16, now_ms)  # another signer's nonce is its own
    assert len(guard) == 2
    # An entry lives until its timestamp leaves the window, and goes at the next claim: the
    # timestamp check refuses such a request anyway, so memory follows the request rate.
    old = LocalNonces(window_s=1.0)
    assert await old.claim("UA", "o" * 16, now_ms - 5000)
    assert await old.claim("UB", "p" * 16, now_ms)
    assert len(old) == 1
    assert await old.claim("UA", "o" * 16, now_ms - 5000)
