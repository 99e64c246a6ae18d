"""The frame codec on its own: hostile bytes give a reason, never another exception."""

from __future__ import annotations

from dataclasses import replace

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from unibus.client import frames
from unibus.client.frames import FrameRejected, Reason
from unibus.identity import Identity

SENDER = Identity.generate()
KEY = bytes(range(32))


def good() -> dict[str, object]:
    frame = frames.seal_frame(SENDER, "room", b"payload", ts_ms=5, epoch=1, room_key=KEY)
    value: dict[str, object] = msgpack.unpackb(frame.encode())
    return value


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected_with_a_reason(raw: bytes) -> None:
    try:
        frame = frames.decode(raw)
        frames.verify(frame, "room")
    except FrameRejected as exc:
        assert isinstance(exc.reason, Reason)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2}, Reason.VERSION),
        ({"v": None}, Reason.VERSION),
        ({"ts": -1}, Reason.MALFORMED),
        ({"ts": True}, Reason.MALFORMED),
        ({"epoch": "1"}, Reason.MALFORMED),
        ({"id": "short"}, Reason.MALFORMED),
        ({"id": "has spaces in it ......"}, Reason.MALFORMED),
        ({"nonce": "not bytes"}, Reason.MALFORMED),
        ({"body": "text, not bin"}, Reason.MALFORMED),
        ({"sig": b"\x00" * 63}, Reason.MALFORMED),
        ({"from": 7}, Reason.MALFORMED),
        ({"from": "Unot-a-key"}, Reason.BAD_SIGNATURE),
        ({"ts": 6}, Reason.BAD_SIGNATURE),
        ({"epoch": 2}, Reason.BAD_SIGNATURE),
    ],
)
def test_each_field_is_checked(change: dict[str, object], reason: Reason) -> None:
    value = {**good(), **change}
    with pytest.raises(FrameRejected) as err:
        frames.verify(frames.decode(msgpack.packb(value, use_bin_type=True)), "room")
    assert err.value.reason is reason


def test_a_missing_field_is_malformed() -> None:
    value = good()
    del value["sig"]
    with pytest.raises(FrameRejected) as err:
        frames.decode(msgpack.packb(value, use_bin_type=True))
    assert err.value.reason is Reason.MALFORMED and "sig" in err.value.detail


def test_key_order_does_not_matter_to_a_receiver() -> None:
    value = good()
    reordered = msgpack.packb(dict(reversed(list(value.items()))), use_bin_type=True)
    frame = frames.decode(reordered)
    frames.verify(frame, "room")
    assert frames.decrypt(frame, KEY) == b"payload"


def test_a_short_nonce_is_malformed_not_a_crash() -> None:
    frame = frames.decode(frames.seal_frame(SENDER, "room", b"x", ts_ms=1, epoch=1, room_key=KEY).encode())
    with pytest.raises(FrameRejected) as err:
        frames.decrypt(replace(frame, nonce=b"\x00" * 8), KEY)
    assert err.value.reason is Reason.MALFORMED
