"""The history query, parsed in process: forgiving about `limit` as the original endpoint
was, strict about `before`, and never more than the cap."""

from __future__ import annotations

import pytest

from unibus.errors import ApiError
from unibus.history.query import DEFAULT_LIMIT, MAX_LIMIT, HistoryQuery, parse_query


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", HistoryQuery()),
        (b"?limit=5", HistoryQuery(limit=5)),
        (b"limit=5&before=42", HistoryQuery(5, 42)),
        (b"limit=0", HistoryQuery(DEFAULT_LIMIT)),
        (b"limit=-3", HistoryQuery(DEFAULT_LIMIT)),
        (b"limit=many", HistoryQuery(DEFAULT_LIMIT)),
        (b"limit=%C2%B2", HistoryQuery(DEFAULT_LIMIT)),  # a superscript two is a digit to str.isdigit
        (b"limit=999999999999", HistoryQuery(MAX_LIMIT)),
        (b"before=", HistoryQuery()),
        (b"other=1&limit=7", HistoryQuery(7)),
        (b"after=0", HistoryQuery(after=0)),
        (b"limit=5&after=42", HistoryQuery(5, after=42)),
        (b"after=", HistoryQuery()),
        (b"after=&before=9", HistoryQuery(before=9)),
    ],
)
def test_accepted_queries(body: bytes, expected: HistoryQuery) -> None:
    assert parse_query(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"before=0", "before must be a positive stream sequence"),
        (b"before=-1", "before must be a positive stream sequence"),
        (b"before=soon", "before must be a positive stream sequence"),
        (b"before=" + b"9" * 21, "before must be a positive stream sequence"),
        ("before=\u00b2".encode(), "history query must be an ASCII URL query string"),
        (b"\xff", "history query must be an ASCII URL query string"),
        (b"after=-1", "after must be a stream sequence (0 or more)"),
        (b"after=next", "after must be a stream sequence (0 or more)"),
        (b"after=" + b"9" * 21, "after must be a stream sequence (0 or more)"),
        (b"after=3&before=9", "after and before cannot be combined: page forwards or backwards"),
    ],
)
def test_refused_queries_are_400_with_a_reason(body: bytes, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_query(body)
    assert (caught.value.code, caught.value.message) == (400, message)
