"""The window a query names in a stream's state, and the reply's two encodings, in
process: the contract docs/protocol.md ("Reading history") states, byte for byte where
it fixes the bytes. (tests/test_history.py checks the same through the service.)"""

from __future__ import annotations

import json
from base64 import b64decode

import msgpack
import pytest

from unibus.history.query import HistoryQuery, Window, window
from unibus.history.reply import EMPTY, MSGPACK, HistoryReply, PageBudget
from unibus.history.state import StreamState
from unibus.streams import PAGE_OVERHEAD

STATE = StreamState(first_seq=101, last_seq=300, messages=180)
"""Sequences 101-300 with 20 of them deleted: windows count sequences, not frames."""


@pytest.mark.parametrize(
    ("state", "query", "expected"),
    [
        (STATE, HistoryQuery(50), Window(251, 300)),
        (STATE, HistoryQuery(50, before=260), Window(210, 259)),
        (STATE, HistoryQuery(50, before=120), Window(101, 119)),  # stops at the stream's start
        (STATE, HistoryQuery(50, before=101), None),  # nothing older
        (STATE, HistoryQuery(50, before=9999), Window(251, 300)),
        (STATE, HistoryQuery(50, after=0), Window(101, 150)),  # expired frames skipped
        (STATE, HistoryQuery(50, after=280), Window(281, 300)),
        (STATE, HistoryQuery(50, after=300), None),  # caught up
        (StreamState(0, 0, 0), HistoryQuery(), None),
        (StreamState(5, 4, 0), HistoryQuery(after=0), None),  # every frame purged
        (None, HistoryQuery(), None),  # no stream
    ],
)
def test_the_window_a_query_names(
    state: StreamState | None, query: HistoryQuery, expected: Window | None
) -> None:
    assert window(state, query) == expected


PAGE = HistoryReply([b"\x00\xff", b"hi"], Window(7, 9), [7, 9])


def test_a_page_in_json() -> None:
    assert PAGE.encode(None) == (
        b'{"messages":["AP8=","aGk="],"first_seq":7,"last_seq":9,"seqs":[7,9]}',
        {"Content-Type": "application/json"},
    )
    assert EMPTY.encode("application/json") == (b'{"messages":[]}', {"Content-Type": "application/json"})


def test_a_page_in_msgpack_carries_the_same_as_json() -> None:
    forward = PAGE.with_stream_last(StreamState(1, 12, 10))
    body, headers = forward.encode(f"{MSGPACK}, application/json")
    assert headers == {"Content-Type": MSGPACK}
    as_json = json.loads(forward.encode(None)[0])
    as_json["messages"] = [b64decode(frame) for frame in as_json["messages"]]
    assert (
        msgpack.unpackb(body)
        == as_json
        == {
            "messages": [b"\x00\xff", b"hi"],
            "first_seq": 7,
            "last_seq": 9,
            "seqs": [7, 9],
            "stream_last_seq": 12,
        }
    )


def test_a_reply_to_after_names_the_stream_end_even_without_a_stream() -> None:
    assert EMPTY.with_stream_last(None).to_json() == b'{"messages":[],"stream_last_seq":0}'


@pytest.mark.parametrize("accept", [None, MSGPACK])
def test_a_frame_costs_at_least_what_its_encoding_adds(accept: str | None) -> None:
    """The budget counts each frame as the reply will carry it, its `seqs` entry at its
    widest, so a page cut to the budget fits `max_payload` with PAGE_OVERHEAD to spare."""
    budget = PageBudget.for_reply(1 << 20, accept)
    assert budget.max_bytes == (1 << 20) - PAGE_OVERHEAD
    frames = [bytes(range(256)) * 3, b"x"]
    seqs = [2**64 - 2, 2**64 - 1]
    page = HistoryReply(frames, Window(seqs[0], seqs[1]), seqs)
    empty = HistoryReply([], Window(seqs[0], seqs[1]), [])
    body, _ = page.encode(accept)
    added = len(body) - len(empty.encode(accept)[0])
    assert added <= sum(budget.cost(frame) for frame in frames)
