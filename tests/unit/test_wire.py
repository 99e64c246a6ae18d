"""The ground floor in process: names derived per control prefix, the one base64url codec,
and JetStream's `{"error": …}` raised as nats-py's own APIError with its err_code."""

from __future__ import annotations

import json

import nats.js.errors as jserr
import pytest

from unibus.wire import base64url, jsapi, names
from unibus.wire.jscodes import JSStreamNotFoundErr


def test_the_default_prefix_keeps_the_names_existing_deployments_have() -> None:
    assert names.bucket_name(names.CONTROL_PREFIX) == "UNIBUS_ROOMS"
    assert names.nonce_stream_name(names.CONTROL_PREFIX) == "UNIBUS-NONCES"
    assert names.nonce_subject(names.CONTROL_PREFIX) == "$UNIBUS.CTL.nonces"
    assert names.control_subject(names.CONTROL_PREFIX, "lobby.history") == "$UNIBUS.CTL.rooms.lobby.history"
    assert names.ping_subject(names.SERVICE_NAME) == "$SRV.PING.unibus-control-plane"
    assert names.stream_name("lobby") == "UNIBUS_lobby"


def test_another_prefix_gets_its_own_bucket_and_nonce_stream_never_a_room_streams_name() -> None:
    bucket, nonces = names.bucket_name("$DEMO.CTL"), names.nonce_stream_name("$DEMO.CTL")
    assert bucket.startswith("UNIBUS_ROOMS-") and bucket != names.bucket_name("$OTHER.CTL")
    assert nonces.startswith("UNIBUS-NONCES-")
    assert not nonces.startswith(names.ROOM_STREAM_PREFIX)


def test_the_error_headers_are_nats_pys_own() -> None:
    from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER

    assert (names.ERROR_HEADER, names.ERROR_CODE_HEADER) == (ERROR_HEADER, ERROR_CODE_HEADER)


@pytest.mark.parametrize("data", [b"", b"\x00", bytes(range(256)), b"\xff" * 64])
def test_base64url_round_trips_without_padding(data: bytes) -> None:
    text = base64url.encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert base64url.decode(text) == data


@pytest.mark.parametrize("text", ["AA==", "a+b/", "not base64!"])
def test_base64url_refuses_padding_and_other_alphabets(text: str) -> None:
    with pytest.raises(ValueError):
        base64url.decode(text)


def test_a_jetstream_error_answer_is_nats_pys_api_error_with_its_code() -> None:
    error = {"code": 404, "err_code": JSStreamNotFoundErr, "description": "stream not found"}
    with pytest.raises(jserr.NotFoundError) as caught:
        jsapi.answer(
            json.dumps({"type": "io.nats.jetstream.api.v1.stream_info_response", "error": error}).encode()
        )
    assert isinstance(caught.value, jserr.APIError)
    assert (caught.value.err_code, caught.value.description) == (JSStreamNotFoundErr, "stream not found")
    with pytest.raises(jserr.ServiceUnavailableError):
        jsapi.answer(
            json.dumps({"error": {"code": 503, "err_code": 10008, "description": "unavailable"}}).encode()
        )


def test_an_answer_without_an_error_is_returned_as_it_came() -> None:
    assert jsapi.answer(b'{"state": {"last_seq": 7}}') == {"state": {"last_seq": 7}}
