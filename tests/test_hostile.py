"""Generated hostile input against every endpoint of a real `unibus serve` subprocess.

Each example must get the one right 4xx, the stored rooms must be exactly as before
(no write reached the room bucket, no stream appeared or vanished), and the process must
still be alive and serving at the end. Hypothesis drives synchronous tests; the NATS
client lives on an event loop in a background thread (`Portal`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import nats
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from unibus.client import ControlClient, Identity
from unibus.natsserver import NatsServer
from unibus.wire.ids import ROOM_ID
from unibus.wire.names import ROOM_BUCKET
from unibus.wire.signing import sign_request

from harness import ServiceInstance
from harness.checks import room_streams
from harness.portal import Portal

pytest_plugins = ["harness.fixtures"]
pytestmark = pytest.mark.timeout(300)

PREFIX = "$UNIBUS.CTL.rooms"
MAX_BODY = 64 * 1024
SKEW_MS = 120_000
ROOM = "seed"
SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
GLOBAL = ["create", "list"]
PER_ROOM = ["info", "history", "members", "members.add", "members.remove", "key", "key.rotate", "delete"]


@dataclass
class Target:
    portal: Portal
    nc: Client
    instance: ServiceInstance
    alice: Identity
    bob: Identity
    baseline: tuple[int, frozenset[str]]

    def ask(self, subject: str, body: bytes, headers: dict[str, str] | None) -> str | None:
        """The ADR-32 error code of the reply, None for success."""
        reply = self.portal.run(self.nc.request(subject, body, headers=headers or None, timeout=10))
        return (reply.headers or {}).get("Nats-Service-Error-Code")

    def snapshot(self) -> tuple[int, frozenset[str]]:
        async def read() -> tuple[int, frozenset[str]]:
            info = await self.nc.jetstream(timeout=5).stream_info(f"KV_{ROOM_BUCKET}")
            return info.state.last_seq, frozenset(await room_streams(self.nc))

        return self.portal.run(read())

    def expect(self, code: str, subject: str, body: bytes, headers: dict[str, str] | None) -> None:
        assert self.ask(subject, body, headers) == code, (subject, body[:80], headers)
        assert self.snapshot() == self.baseline, "a rejected request changed the stored rooms"


@pytest.fixture(scope="module")
def target(standalone: tuple[NatsServer, ServiceInstance]) -> Iterator[Target]:
    server, instance = standalone
    portal = Portal()
    nc = portal.run(nats.connect(server.url))
    alice, bob = Identity.generate(), Identity.generate()
    as_alice = ControlClient(nc, alice)
    portal.run(as_alice.create_room(ROOM))
    portal.run(as_alice.add_member(ROOM, bob.public_key))
    t = Target(portal, nc, instance, alice, bob, (0, frozenset()))
    t.baseline = t.snapshot()
    yield t
    assert instance.running, "the service died"
    assert portal.run(as_alice.info(ROOM))["owner"] == alice.public_key
    assert "internal error" not in instance.log()
    portal.run(nc.close())
    portal.close()


def subject_of(endpoint: str, room_id: str = ROOM) -> str:
    return f"{PREFIX}.{endpoint}" if endpoint in GLOBAL else f"{PREFIX}.{room_id}.{endpoint}"


endpoints = st.sampled_from(GLOBAL + PER_ROOM)
per_room = st.sampled_from(PER_ROOM)
small_bodies = st.binary(max_size=2048)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
# Subject-safe tokens (no '.', whitespace or wildcards) that are not room ids.
bad_ids = st.one_of(
    st.text(
        st.characters(blacklist_characters=". *>\t\r\n", blacklist_categories=["Cs", "Cc", "Z"]), min_size=1
    ),
    st.from_regex(r"[A-Za-z0-9_-]{65,90}", fullmatch=True),
).filter(lambda s: ROOM_ID.fullmatch(s) is None)
# Bodies that are neither empty nor a JSON object: garbage, other JSON, wrong encodings.
not_objects = st.one_of(
    st.binary(min_size=1, max_size=512),
    st.from_type(type(None)).map(lambda _: b"null"),
    st.lists(st.integers()).map(lambda v: json.dumps(v).encode()),
    st.text(min_size=1).map(lambda t: json.dumps({"name": t + "\u00e9"}).encode("latin-1", "replace")),
    st.text(min_size=1).map(lambda t: ("{" + t).encode()),
).filter(lambda b: _not_an_object(b))


def _not_an_object(body: bytes) -> bool:
    if not body.strip():
        return False
    try:
        return not isinstance(json.loads(body), dict)
    except (UnicodeDecodeError, ValueError):
        return True


@SETTINGS
@given(
    endpoint=endpoints,
    room_id=st.one_of(st.just(ROOM), bad_ids),
    body=small_bodies,
    auth=st.dictionaries(
        st.sampled_from(["Unibus-Signer", "Unibus-Timestamp", "Unibus-Nonce", "Unibus-Signature"]),
        header_text,
    ),
    extra=st.dictionaries(st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True), header_text, max_size=3),
)
def test_missing_or_garbled_signatures_are_401(
    target: Target, endpoint: str, room_id: str, body: bytes, auth: dict[str, str], extra: dict[str, str]
) -> None:
    target.expect("401", subject_of(endpoint, room_id), body, {**extra, **auth})


@SETTINGS
@given(endpoint=endpoints, other=endpoints, body=small_bodies, other_body=small_bodies)
def test_a_signature_for_another_subject_or_body_is_401(
    target: Target, endpoint: str, other: str, body: bytes, other_body: bytes
) -> None:
    signed_for = (subject_of(other, "elsewhere"), other_body)
    sent = (subject_of(endpoint), body)
    assume(signed_for != sent)
    headers = sign_request(target.alice, *signed_for)
    target.expect("401", *sent, headers)


@SETTINGS
@given(
    endpoint=endpoints,
    offset_ms=st.one_of(st.integers(SKEW_MS + 5_000, 10**12), st.integers(-(10**12), -SKEW_MS - 5_000)),
)
def test_expired_and_future_timestamps_are_401(target: Target, endpoint: str, offset_ms: int) -> None:
    subject = subject_of(endpoint)
    ts = max(0, int(time.time() * 1000) + offset_ms)
    target.expect("401", subject, b"", sign_request(target.alice, subject, b"", timestamp_ms=ts))


@SETTINGS
@given(endpoint=st.sampled_from(["info", "members", "key", "history", "list"]))
def test_replays_are_401(target: Target, endpoint: str) -> None:
    subject = subject_of(endpoint)
    headers = sign_request(target.bob, subject, b"")
    assert target.ask(subject, b"", headers) is None
    for _ in range(2):
        target.expect("401", subject, b"", headers)


@SETTINGS
@given(endpoint=endpoints, size=st.integers(MAX_BODY + 1, 4 * MAX_BODY), signed=st.booleans())
def test_oversized_bodies_are_413(target: Target, endpoint: str, size: int, signed: bool) -> None:
    subject, body = subject_of(endpoint), b"{" * size
    headers = sign_request(target.alice, subject, body) if signed else None
    target.expect("413", subject, body, headers)


@SETTINGS
@given(endpoint=per_room, room_id=bad_ids, body=small_bodies)
def test_bad_room_ids_are_400(target: Target, endpoint: str, room_id: str, body: bytes) -> None:
    subject = subject_of(endpoint, room_id)
    target.expect("400", subject, body, sign_request(target.alice, subject, body))


@SETTINGS
@given(endpoint=per_room, missing=st.booleans())
def test_strangers_get_403_and_missing_rooms_404(target: Target, endpoint: str, missing: bool) -> None:
    stranger = Identity.generate()
    subject = subject_of(endpoint, "no-such-room" if missing else ROOM)
    body = json.dumps({"member": target.bob.public_key}).encode()
    target.expect("404" if missing else "403", subject, body, sign_request(stranger, subject, body))


malformed_by_owner = st.one_of(
    st.tuples(st.sampled_from(["create", "members.add", "members.remove", "key.rotate"]), not_objects),
    st.tuples(st.just("create"), bad_ids.map(lambda i: json.dumps({"id": i}).encode())),
    st.tuples(
        st.just("create"), st.text().map(lambda m: json.dumps({"id": "fresh", "mode": m + "!"}).encode())
    ),
    st.tuples(
        st.sampled_from(["members.add", "members.remove"]),
        st.one_of(st.text(), st.integers(), st.none()).map(lambda m: json.dumps({"member": m}).encode()),
    ),
    st.tuples(st.just("history"), st.binary(min_size=1).filter(lambda b: not b.isascii())),
    st.tuples(st.just("history"), st.text(min_size=1).map(lambda t: f"before=x{t}".encode())),
)


@SETTINGS
@given(case=malformed_by_owner)
def test_malformed_bodies_from_the_owner_are_400(target: Target, case: tuple[str, bytes]) -> None:
    endpoint, body = case
    subject = subject_of(endpoint)
    target.expect("400", subject, body, sign_request(target.alice, subject, body))
