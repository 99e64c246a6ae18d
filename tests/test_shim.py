"""The HTTP shim against a real nats-server and control plane: mapping, CORS, limits, outages."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from unibus.callout.keys import BoundaryKeys
from unibus.client import ControlClient, Identity
from unibus.config import Config, parse_listen
from unibus.natsserver import NatsServer, ServerSpec, free_port
from unibus.runner import Running
from unibus.shim import Shim, ShimSettings, serving
from unibus.wire.interest import confirm_interest
from unibus.wire.signing import sign_request

from harness.cli import UNIBUS

APP_ORIGIN = "http://app.example"
PREFIX = "$UNIBUS.CTL"


def settings(**overrides: Any) -> ShimSettings:
    base = ShimSettings(host="127.0.0.1", port=0, allow_origins=frozenset({APP_ORIGIN}))
    return dataclasses.replace(base, **overrides)


@contextlib.asynccontextmanager
async def shim_on(url: str, identity: Identity, **overrides: Any) -> AsyncIterator[Shim]:
    """The shim on its own connection, as its boundary user (the `shim_key` fixture)."""
    async with serving(settings(**overrides), nats_url=url, identity=identity) as shim:
        await until(lambda: shim.link.connected, "the shim connects to NATS")
        yield shim


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, limit_s: float = 20.0) -> None:
    """Poll a condition, bounded: outages and reconnects take a moment on a busy machine."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while asyncio.get_running_loop().time() < deadline:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}")


@pytest.fixture
def shim_key(boundary_keys: BoundaryKeys) -> Identity:
    return boundary_keys.users["shim"]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
async def shim(shim_key: Identity, nats_server: NatsServer) -> AsyncIterator[Shim]:
    async with shim_on(nats_server.url, shim_key) as running_shim:
        yield running_shim


def signed(identity: Identity, room: str, query: str) -> dict[str, str]:
    return sign_request(identity, f"{PREFIX}.rooms.{room}.history", query.encode())


async def get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.get(url, headers=headers) as response:
        body = await response.read()
        parsed = json.loads(body) if body else None
        return response.status, parsed, response


async def history_via(
    http: aiohttp.ClientSession, shim: Shim, who: Identity | None, room: str, query: str = "limit=10"
) -> tuple[int, Any]:
    headers = signed(who, room, query) if who is not None else None
    status, body, _ = await get(http, f"{shim.url}/rooms/{room}/history?{query}", headers)
    return status, body


async def room_with_frames(nc: Client, as_alice: ControlClient, room: str, frames: list[bytes]) -> None:
    """A persisted room whose frames came in over core NATS, as a browser sends them."""
    created = await as_alice.create_room(room, mode="matrix")
    for frame in frames:
        await nc.publish(created["subject"], frame)
    await nc.flush()

    async def stored() -> bool:
        return len((await as_alice.history(room)).frames) == len(frames)

    await until(stored, f"{room} holds its frames")


FRAMES = [b"\x00one\xff", "two \u2603".encode(), b"three"]


async def test_history_relayed_as_the_service_returns_it(
    http: aiohttp.ClientSession, shim: Shim, nc: Client, as_alice: ControlClient, alice: Identity
) -> None:
    await room_with_frames(nc, as_alice, "lobby", FRAMES)
    status, body, response = await get(
        http, f"{shim.url}/rooms/lobby/history?limit=10", signed(alice, "lobby", "limit=10")
    )
    assert status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert [base64.b64decode(m) for m in body["messages"]] == FRAMES
    assert (body["first_seq"], body["last_seq"]) == (1, 3)


async def test_query_string_is_relayed_byte_for_byte(
    http: aiohttp.ClientSession, shim: Shim, nc: Client, as_alice: ControlClient, alice: Identity
) -> None:
    """Percent-escapes a re-encoder would normalise: the signature only holds if untouched."""
    await room_with_frames(nc, as_alice, "bytes", FRAMES)
    query = "limit=%32&before=&x=%7e%41+b"
    url = aiohttp.client.URL(f"{shim.url}/rooms/bytes/history?{query}", encoded=True)
    async with http.get(url, headers=signed(alice, "bytes", query)) as response:
        assert response.status == 200
        assert len((await response.json())["messages"]) == 2


async def test_a_browser_follower_catches_up_with_after(
    http: aiohttp.ClientSession, shim: Shim, nc: Client, as_alice: ControlClient, alice: Identity
) -> None:
    """`after` goes through like any query (a browser follower's catch-up read), and so
    does its 400."""
    await room_with_frames(nc, as_alice, "caught", FRAMES)
    status, body = await history_via(http, shim, alice, "caught", "after=1&limit=10")
    assert status == 200
    assert [base64.b64decode(m) for m in body["messages"]] == FRAMES[1:]
    assert (body["seqs"], body["stream_last_seq"]) == ([2, 3], 3)
    status, body = await history_via(http, shim, alice, "caught", "after=3")
    assert (status, body) == (200, {"messages": [], "stream_last_seq": 3})
    status, body = await history_via(http, shim, alice, "caught", "after=1&before=3")
    assert status == 400 and "cannot be combined" in body["error"]


async def test_msgpack_is_negotiated_through_accept(
    http: aiohttp.ClientSession, shim: Shim, nc: Client, as_alice: ControlClient, alice: Identity
) -> None:
    await room_with_frames(nc, as_alice, "packed", FRAMES)
    headers = {**signed(alice, "packed", ""), "Accept": "application/msgpack"}
    async with http.get(f"{shim.url}/rooms/packed/history", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/msgpack"


async def test_service_errors_become_http_statuses(
    http: aiohttp.ClientSession,
    shim: Shim,
    nc: Client,
    as_alice: ControlClient,
    alice: Identity,
    bob: Identity,
) -> None:
    await room_with_frames(nc, as_alice, "private", [b"x"])
    assert (await history_via(http, shim, None, "private"))[0] == 401
    assert (await history_via(http, shim, bob, "private"))[0] == 403
    status, body = await history_via(http, shim, alice, "missing")
    assert status == 404
    assert "error" in body
    # The shim cannot alter a request: a signature for limit=1 does not carry limit=2.
    status, _, _ = await get(
        http, f"{shim.url}/rooms/private/history?limit=2", signed(alice, "private", "limit=1")
    )
    assert status == 401


async def test_bad_room_id_is_refused_without_a_nats_round_trip(
    http: aiohttp.ClientSession, shim: Shim, nc: Client, plane: Running
) -> None:
    seen: list[Msg] = []

    async def record(msg: Msg) -> None:
        seen.append(msg)

    sub = await nc.subscribe(f"{PREFIX}.rooms.>", cb=record)
    await confirm_interest(nc)
    for bad in ["a.b", "a%2Ab", "%3E", "a%20b", "x" * 65]:
        status, body, _ = await get(http, f"{shim.url}/rooms/{bad}/history")
        assert status == 400, bad
        assert "room id" in body["error"]
    await nc.flush()
    await sub.unsubscribe()
    assert seen == []


async def test_no_service_is_503_and_a_silent_one_504(
    shim_key: Identity, http: aiohttp.ClientSession, nats_server: NatsServer, nc: Client
) -> None:
    async with shim_on(nats_server.url, shim_key, request_timeout_s=0.5, health_timeout_s=0.5) as shim:
        status, body = await history_via(http, shim, None, "anyroom")
        assert status == 503
        assert "no control plane" in body["error"]
        status, body, _ = await get(http, f"{shim.url}/healthz")
        assert (status, body) == (503, {"nats": "connected", "service": "no responders"})

        async def ignore(msg: Msg) -> None:
            """A responder that never answers: the shim must give up on its own."""

        await nc.subscribe(f"{PREFIX}.rooms.anyroom.history", cb=ignore)
        await confirm_interest(nc)  # flush() alone can overtake the SUB: "no responders", 503
        silent = await history_via(http, shim, None, "anyroom")
        assert silent[0] == 504, silent


async def test_healthz_ok_when_the_service_answers(
    http: aiohttp.ClientSession, shim: Shim, plane: Running, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="unibus.shim.access"):
        status, body, response = await get(http, f"{shim.url}/healthz?probe=1")
    assert (status, body) == (200, {"nats": "connected", "service": "ok"})
    assert response.headers["Server"] == "unibus"  # no Python or aiohttp version
    access = [r.getMessage() for r in caplog.records if r.name == "unibus.shim.access"]
    assert len(access) == 1 and '"GET /healthz?probe=1 HTTP/1.1" 200' in access[0]


async def test_cors_grants_only_listed_origins(
    http: aiohttp.ClientSession, shim: Shim, plane: Running
) -> None:
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "unibus-signer,unibus-timestamp,unibus-nonce,unibus-signature",
    }
    url = f"{shim.url}/rooms/lobby/history?limit=1"
    async with http.options(url, headers={**preflight, "Origin": APP_ORIGIN}) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
        allowed = response.headers["Access-Control-Allow-Headers"]
        for name in ("Unibus-Signer", "Unibus-Timestamp", "Unibus-Nonce", "Unibus-Signature"):
            assert name in allowed
        assert "GET" in response.headers["Access-Control-Allow-Methods"]
        assert "Origin" in response.headers.getall("Vary")
    async with http.options(url, headers={**preflight, "Origin": "http://evil.example"}) as response:
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Headers" not in response.headers
    for origin, grant in [(APP_ORIGIN, APP_ORIGIN), ("http://evil.example", None)]:
        async with http.get(url, headers={"Origin": origin}) as response:
            assert response.status == 401
            assert response.headers.get("Access-Control-Allow-Origin") == grant
            assert "Origin" in response.headers.getall("Vary")
    # Router errors are JSON and readable cross-origin too.
    async with http.get(f"{shim.url}/nowhere", headers={"Origin": APP_ORIGIN}) as response:
        assert response.status == 404
        assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
        assert "error" in await response.json()


async def test_no_origin_is_granted_by_default(
    shim_key: Identity, http: aiohttp.ClientSession, nats_server: NatsServer, plane: Running
) -> None:
    async with (
        shim_on(nats_server.url, shim_key, allow_origins=frozenset()) as shim,
        http.get(f"{shim.url}/healthz", headers={"Origin": APP_ORIGIN}) as response,
    ):
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers


async def raw_exchange(shim: Shim, data: bytes) -> bytes:
    """Send raw bytes and read until the server closes (bounded)."""
    host, port = shim.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 20)
    finally:
        writer.close()


async def test_oversized_request_line_and_headers_are_refused(shim: Shim, plane: Running) -> None:
    long_line = b"GET /healthz?" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert (await raw_exchange(shim, long_line)).split(b" ")[1][:1] == b"4"
    big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10000 + b"\r\n\r\n"
    assert (await raw_exchange(shim, big_header)).split(b" ")[1][:1] == b"4"
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200))
    assert (await raw_exchange(shim, many + b"\r\n")).split(b" ")[1][:1] == b"4"


async def test_a_client_that_never_finishes_its_headers_is_dropped(
    shim_key: Identity, nats_server: NatsServer
) -> None:
    async with shim_on(nats_server.url, shim_key, idle_timeout_s=0.5) as shim:
        # Half a request, then silence: the server closes; read() returns what it sent (EOF).
        answer = await raw_exchange(shim, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert b"200" not in answer


async def test_keeps_serving_through_a_nats_outage(
    shim_key: Identity,
    http: aiohttp.ClientSession,
    nats_server: NatsServer,
    nc: Client,
    as_alice: ControlClient,
    alice: Identity,
) -> None:
    await room_with_frames(nc, as_alice, "durable", FRAMES)
    async with shim_on(nats_server.url, shim_key) as shim:
        await asyncio.to_thread(nats_server.stop)

        async def reports_disconnected() -> bool:
            status, body, _ = await get(http, f"{shim.url}/healthz")
            return status == 503 and body["nats"] == "disconnected"

        await until(reports_disconnected, "healthz reports NATS down")
        status, body = await history_via(http, shim, alice, "durable")
        assert status == 503
        assert "NATS" in body["error"]

        await asyncio.to_thread(nats_server.start)

        async def healthy() -> bool:
            return (await get(http, f"{shim.url}/healthz"))[0] == 200

        await until(healthy, "healthz recovers with NATS")

        async def history_back() -> bool:
            return (await history_via(http, shim, alice, "durable"))[0] == 200

        await until(history_back, "history is served again")
        status, body = await history_via(http, shim, alice, "durable")
        assert [base64.b64decode(m) for m in body["messages"]] == FRAMES


async def test_starts_before_nats_and_connects_when_it_comes(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    server = NatsServer(ServerSpec(store_dir=tmp_path / "late", port=free_port(), jetstream=False))
    async with serving(settings(), nats_url=server.url) as shim:
        status, body, _ = await get(http, f"{shim.url}/healthz")
        assert (status, body["nats"], body["service"]) == (503, "disconnected", "unknown")
        await asyncio.to_thread(server.start)
        try:

            async def answers_without_service() -> bool:
                return (await get(http, f"{shim.url}/healthz"))[1]["nats"] == "connected"

            await until(answers_without_service, "the shim connects once NATS is up")
        finally:
            await server.astop()


async def test_serve_with_http_runs_the_shim_beside_the_service(
    http: aiohttp.ClientSession, start_plane: Callable[..., Awaitable[Running]]
) -> None:
    run = await start_plane(http_listen="127.0.0.1:0")
    assert run.http_url is not None
    status, body, _ = await get(http, f"{run.http_url}/healthz")
    assert (status, body) == (200, {"nats": "connected", "service": "ok"})


async def test_cli_with_env_fallbacks(http: aiohttp.ClientSession, nats_server: NatsServer) -> None:
    port = free_port()
    env = {
        **os.environ,
        "UNIBUS_NATS_URL": nats_server.url,
        "UNIBUS_HTTP_LISTEN": f"127.0.0.1:{port}",
        "UNIBUS_CORS_ORIGINS": f"{APP_ORIGIN}, http://other.example",
    }
    unibus = str(Path(sys.executable).parent / "unibus")
    proc = await asyncio.create_subprocess_exec(
        unibus, "shim", env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        ready = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert f"127.0.0.1:{port}".encode() in ready
        async with http.get(f"http://127.0.0.1:{port}/healthz", headers={"Origin": APP_ORIGIN}) as response:
            assert response.status == 503  # NATS is there, no control plane is
            assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 20) == 0


def test_cli_refuses_a_bad_listen_address() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIBUS_")}
    unibus = str(Path(sys.executable).parent / "unibus")
    bad = subprocess.run(
        [unibus, "shim", "--listen", "nowhere"],  # NATS defaults to nats://127.0.0.1:4222
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert b"host:port" in bad.stderr


def test_listen_and_origin_parsing() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen(":9000") == ("0.0.0.0", 9000)
    for bad in ["8080", "host:", "host:99999", "host:port"]:
        with pytest.raises(ValueError):
            parse_listen(bad)
    assert Config.from_env({"UNIBUS_CORS_ORIGINS": " http://a , ,http://b"}).allowed_origins == {
        "http://a",
        "http://b",
    }
    assert Config.from_env({}).allowed_origins == frozenset()
    config = Config(api_prefix="$X.CTL", service_name="svc")
    chosen = ShimSettings.from_config(config, "127.0.0.1:0", ["http://a"])
    assert (chosen.api_prefix, chosen.service_name, chosen.allow_origins) == ("$X.CTL", "svc", {"http://a"})


async def test_header_bytes_nats_cannot_carry_are_a_400_and_nothing_is_sent(
    shim: Shim, plane: Running, http: aiohttp.ClientSession
) -> None:
    """`Unibus-Nonce: \\xff` used to fail inside the NATS publish after the reply had been
    registered: a plain-text 500, a traceback and a leaked reply slot per request."""
    # A control character never gets past aiohttp's own parser (its plain-text 400).
    for value, ours in ((b"\xff", True), (b"caf\xc3\xa9", True), (b"a\x01b", False)):
        request = (
            b"GET /rooms/lobby/history HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUnibus-Nonce: "
            + value
            + b"\r\n\r\n"
        )
        answer = await raw_exchange(shim, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"400", answer
        if ours:
            assert json.loads(body) == {"error": "header Unibus-Nonce must be printable ASCII"}
    status, _, _ = await get(http, f"{shim.url}/healthz")
    assert status == 200  # still serving


async def test_a_w3c_trace_context_travels_into_the_nats_request(
    shim: Shim, http: aiohttp.ClientSession, nc: Client
) -> None:
    """A trace begun in the browser continues through the service; a malformed one is
    dropped (never a failure), and nothing else the caller sends is passed on."""
    seen: list[dict[str, str]] = []

    async def echo(msg: Msg) -> None:
        seen.append(dict(msg.headers or {}))
        await msg.respond(b'{"messages":[]}')

    await nc.subscribe(f"{PREFIX}.rooms.traced.history", cb=echo)
    await confirm_interest(nc)
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    url = f"{shim.url}/rooms/traced/history?limit=1"
    traced = {"traceparent": parent, "tracestate": "vendor=abc", "X-Other": "no"}
    assert (await get(http, url, traced))[0] == 200
    assert seen[-1].get("traceparent") == parent and seen[-1].get("tracestate") == "vendor=abc"
    assert "X-Other" not in seen[-1]
    for malformed in ("00-xyz-00f067aa0ba902b7-01", "ff-" + parent[3:], parent + "-extra"):
        assert (await get(http, url, {"traceparent": malformed, "tracestate": "vendor=abc"}))[0] == 200
        assert "traceparent" not in seen[-1] and "tracestate" not in seen[-1]


async def test_a_shim_without_its_nkey_says_why_at_warning_and_in_healthz(
    http: aiohttp.ClientSession, nats_server: NatsServer, plane: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Under the boundary a shim started without `--nkey` printed "ready" and then only
    `{"nats": "disconnected"}`, the Authorization Violation at DEBUG. Now the refusal is a
    WARNING naming the setting to fix, and `/healthz` carries it."""
    with caplog.at_level(logging.WARNING):
        async with serving(settings(), nats_url=nats_server.url) as shim:

            def warned() -> bool:
                return any("Authorization Violation" in r.getMessage() for r in caplog.records)

            await until(warned, "the refusal is logged")
            status, body, _ = await get(http, f"{shim.url}/healthz")
    [record] = [r for r in caplog.records if "Authorization Violation" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "UNIBUS_NKEY or --nkey" in record.getMessage() and "shim.nk" in record.getMessage()
    assert status == 503 and body["nats"] == "disconnected"
    assert "Authorization Violation" in body["reason"] and "UNIBUS_NKEY" in body["reason"]


async def test_unibus_sign_prints_a_curl_command_that_gets_the_history(
    http: aiohttp.ClientSession,
    shim: Shim,
    nc: Client,
    as_alice: ControlClient,
    alice: Identity,
    tmp_path: Path,
) -> None:
    """In enforce mode plain curl gets 401; the line `unibus sign` prints, run by a shell
    with the real curl, gets the room's frames. The same signature twice is a replay."""
    await room_with_frames(nc, as_alice, "curled", FRAMES)
    seed = tmp_path / "alice.seed"
    alice.save(seed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIBUS_")}
    argv = [*UNIBUS, "sign", "curled", "limit=10", "--identity", str(seed), "--shim", shim.url]
    printed = await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, timeout=60
    )
    assert printed.returncode == 0, printed.stderr
    command = printed.stdout.strip()
    assert command.startswith("curl -s -H 'Unibus-Signer: ") and command.endswith("/history?limit=10'")

    async def curl(line: str) -> tuple[int, Any]:
        """`line` run by a shell, as a user pastes it; the status on a last line of its own."""
        done = await asyncio.to_thread(
            subprocess.run,
            ["sh", "-c", line + " -w '\\n%{http_code}'"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        body, _, code = done.stdout.rpartition("\n")
        return int(code), json.loads(body)

    status, body = await curl(command)
    assert status == 200, body
    assert [base64.b64decode(m) for m in body["messages"]] == FRAMES
    assert (await curl(command))[0] == 401  # the nonce is spent: sign again for the next one
    assert (await curl(f"curl -s '{shim.url}/rooms/curled/history?limit=10'"))[0] == 401

    only = [*argv[:-2], "--headers"]
    headers = await asyncio.to_thread(
        subprocess.run, only, env=env, capture_output=True, text=True, timeout=60
    )
    names = [line.partition(":")[0] for line in headers.stdout.splitlines()]
    assert names == ["Unibus-Signer", "Unibus-Timestamp", "Unibus-Nonce", "Unibus-Signature"]
