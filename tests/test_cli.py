"""The `unibus` command end to end: real subprocesses against a real nats-server and service."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import signal
import socket
import stat
import subprocess
import termios
import time
import urllib.request
from asyncio.subprocess import PIPE
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from unibus import __version__
from unibus.identity import Identity
from unibus.natsserver import NatsServer, free_port
from unibus.operations.backup import restore_lock_name
from unibus.processes import stop_process
from unibus.runner import Running
from unibus.wire.names import CONTROL_PREFIX

from harness.cli import UNIBUS, clean_env, run_cli, start_cli
from harness.waiting import wait_until


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


class User:
    """One person at one terminal: their own identity file, found through the environment."""

    def __init__(self, home: Path, nats_url: str) -> None:
        self.env = {
            **os.environ,
            "UNIBUS_NATS_URL": nats_url,
            "UNIBUS_IDENTITY": str(home / "identity.seed"),
            "XDG_CONFIG_HOME": str(home),
        }
        self.identity_path = home / "identity.seed"

    async def start(self, *args: str, stdin: bytes | None = None) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *UNIBUS,
            *args,
            env=self.env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def run(self, *args: str, stdin: bytes | None = None) -> Result:
        proc = await self.start(*args, stdin=stdin)
        out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    async def ok(self, *args: str, stdin: bytes | None = None) -> Result:
        result = await self.run(*args, stdin=stdin)
        assert result.code == 0, result
        return result


@pytest.fixture
def users(tmp_path: Path, bounded_plane: Running) -> tuple[User, User, User]:
    """Three people at their terminals, on the shipped NATS config (the trust boundary on):
    each command connects with its identity's nkey."""
    return tuple(User(tmp_path / name, bounded_plane.nats_url) for name in ("alice", "bob", "carol"))  # type: ignore[return-value]


async def test_readme_flow_encrypted_room_from_two_terminals(users: tuple[User, User, User]) -> None:
    alice, bob, _ = users
    alice_key = (await alice.ok("keygen")).out.strip()
    bob_key = (await bob.ok("keygen", "--json")).json()["public_key"]
    assert alice_key == Identity.load(alice.identity_path).public_key
    assert stat.S_IMODE(alice.identity_path.stat().st_mode) == 0o600

    created = (await alice.ok("room", "create", "lobby", "--name", "Lobby", "--json")).json()
    assert created["encrypted"] is True and created["mode"] == "matrix"
    assert "added" in (await alice.ok("room", "add", "lobby", bob_key)).out

    await alice.ok("send", "lobby", "hello", "bob")
    await alice.ok("send", "lobby", stdin=b"second line\nthird line\n")
    history = await bob_history_until(bob, "lobby", 3)
    assert [m["text"] for m in history["messages"]] == ["hello bob", "second line", "third line"]
    assert {m["from"] for m in history["messages"]} == {alice_key}

    human = await bob.ok("history", "lobby")
    assert [line.split("  ", 2)[2] for line in human.out.splitlines()] == [
        "hello bob",
        "second line",
        "third line",
    ]

    members = (await bob.ok("room", "members", "lobby", "--json")).json()
    assert {m["id"]: m["role"] for m in members["members"]} == {alice_key: "owner", bob_key: "member"}
    assert [r["id"] for r in (await bob.ok("room", "list", "--json")).json()["rooms"]] == ["lobby"]


async def bob_history_until(user: User, room: str, count: int) -> dict:
    """The stream stores asynchronously to the publish: read until it holds `count`."""
    history: dict = {}

    async def reached() -> bool:
        nonlocal history
        history = (await user.ok("history", room, "--json")).json()
        return len(history["messages"]) >= count

    await wait_until(reached, f"{room} holds {count} messages", every_s=0.05)
    return history


async def owner_and_member(owner: User, member: User, room: str) -> str:
    """Both get identities; `owner` creates an encrypted room and adds `member`."""
    await owner.ok("keygen")
    member_key = (await member.ok("keygen")).out.strip()
    await owner.ok("room", "create", room)
    await owner.ok("room", "add", room, member_key)
    return member_key


async def test_tail_prints_live_messages(users: tuple[User, User, User]) -> None:
    alice, bob, _ = users
    await owner_and_member(alice, bob, "live")

    tail = await bob.start("tail", "live", "--count", "2", "--json")
    assert tail.stderr is not None and tail.stdout is not None
    ready = await asyncio.wait_for(tail.stderr.readline(), 60)
    assert ready.decode().startswith("listening on unibus.room.live")
    await alice.ok("send", "live", "one")
    await alice.ok("send", "live", "two")
    out, _ = await asyncio.wait_for(tail.communicate(), 60)
    assert tail.returncode == 0
    assert [json.loads(line)["text"] for line in out.decode().splitlines()] == ["one", "two"]


async def test_tail_ends_with_the_403_when_its_member_is_removed(users: tuple[User, User, User]) -> None:
    """It used to hang there in silence. Removal is said on stderr, and it exits 1."""
    alice, bob, _ = users
    bob_key = await owner_and_member(alice, bob, "ousted")
    tail = await bob.start("tail", "ousted", "--json")
    assert tail.stderr is not None
    ready = await asyncio.wait_for(tail.stderr.readline(), 60)
    assert ready.decode().startswith("listening on unibus.room.ousted.stored")
    await alice.ok("send", "ousted", "before")
    await alice.ok("room", "remove", "ousted", bob_key)
    out, err = await asyncio.wait_for(tail.communicate(), 60)
    assert tail.returncode == 1, err
    assert [json.loads(line)["text"] for line in out.decode().splitlines()] == ["before"]
    assert "no longer a member of ousted" in err.decode()
    assert "Traceback" not in err.decode()


async def test_history_paging_options(users: tuple[User, User, User]) -> None:
    alice, _, _ = users
    await alice.ok("keygen")
    await alice.ok("room", "create", "paged", "--plain")
    await alice.ok("send", "paged", stdin=b"".join(f"m{i}\n".encode() for i in range(7)))
    await bob_history_until(alice, "paged", 7)
    # The wire's names (docs/protocol.md), each message with its stream sequence.
    newest = (await alice.ok("history", "paged", "--limit", "3", "--json")).json()
    assert [(m["seq"], m["text"]) for m in newest["messages"]] == [(5, "m4"), (6, "m5"), (7, "m6")]
    assert (newest["first_seq"], newest["last_seq"]) == (5, 7)
    older = (await alice.ok("--json", "history", "paged", "--limit", "3", "--before", "5")).json()
    assert [(m["seq"], m["text"]) for m in older["messages"]] == [(2, "m1"), (3, "m2"), (4, "m3")]
    everything = (await alice.ok("history", "paged", "--all", "--limit", "3", "--json")).json()
    assert [(m["seq"], m["text"]) for m in everything["messages"]] == [(i + 1, f"m{i}") for i in range(7)]
    assert (everything["first_seq"], everything["last_seq"]) == (1, 7)
    human = await alice.ok("history", "paged", "--limit", "3")
    assert human.err.strip() == "(older messages: --before 5)"


async def test_errors_are_one_line_with_a_non_zero_exit(users: tuple[User, User, User]) -> None:
    alice, bob, carol = users
    missing = await alice.run("room", "list")
    assert missing.code == 2 and missing.err.strip().startswith("unibus: no identity at")

    await alice.ok("keygen")
    again = await alice.run("keygen")
    assert again.code == 1 and "exists" in again.err and len(again.err.strip().splitlines()) == 1

    await carol.ok("keygen")
    await alice.ok("room", "create", "club")
    await alice.ok("room", "create", "plainclub", "--plain")
    cases = [
        (await carol.run("history", "club"), "unibus: 403 "),
        (await alice.run("room", "info", "nowhere"), "unibus: 404 "),
        (await alice.run("room", "create", "club"), "unibus: 409 "),
        (await alice.run("room", "add", "plainclub", "not-a-key"), "unibus: 400 "),
        (await carol.run("room", "delete", "club"), "unibus: 403 "),
    ]
    for result, prefix in cases:
        assert result.code == 1, result
        assert result.err.startswith(prefix) and len(result.err.strip().splitlines()) == 1, result
        assert result.out == ""

    unsealable = await alice.run("room", "add", "club", "not-a-key")
    assert unsealable.code == 2 and "not an nkey user public key" in unsealable.err

    await bob.ok("keygen")
    unreachable = await bob.run("room", "list", "--nats-url", "nats://127.0.0.1:1", "--timeout", "2")
    assert unreachable.code == 1 and unreachable.err.startswith("unibus: cannot reach NATS")


async def test_remove_rotates_and_delete_cleans_up(users: tuple[User, User, User]) -> None:
    alice, bob, _ = users
    bob_key = await owner_and_member(alice, bob, "shortlived")
    removed = (await alice.ok("room", "remove", "shortlived", bob_key, "--json")).json()
    assert removed["key_epoch"] == 2
    assert (await alice.ok("room", "rotate", "shortlived", "--json")).json()["key_epoch"] == 3
    assert (await bob.run("history", "shortlived")).code == 1
    assert (await alice.ok("room", "delete", "shortlived")).out.strip() == "deleted shortlived"
    assert (await alice.ok("room", "list", "--json")).json() == {"rooms": []}


def test_usage_errors_name_what_to_fix_and_exit_2() -> None:
    """`unibus` alone prints its help; a bad setting names the variable and the choices;
    all are usage errors (2), one line each, no traceback."""
    alone = run_cli()
    assert alone.returncode == 2 and "usage: unibus" in alone.stdout and "serve" in alone.stdout
    assert run_cli("--version").stdout.strip() == f"unibus {__version__}"
    mode = run_cli("serve", UNIBUS_AUTH_MODE="devv")
    assert mode.returncode == 2
    assert mode.stderr.strip() == "unibus: UNIBUS_AUTH_MODE (--auth): 'devv' is not one of enforce, dev, off"
    for variable, value in (("UNIBUS_METRICS_LISTEN", "9100"), ("UNIBUS_USE_JETSTREAM", "maybe")):
        named = run_cli("serve", **{variable: value})
        assert named.returncode == 2 and named.stderr.startswith(f"unibus: {variable}"), named.stderr
    shim_listen = run_cli("shim", UNIBUS_HTTP_LISTEN="8000")
    assert shim_listen.returncode == 2 and shim_listen.stderr.startswith(
        "unibus: UNIBUS_HTTP_LISTEN (--listen)"
    )
    level = run_cli("health", UNIBUS_LOG_LEVEL="loud")
    assert level.returncode == 2
    assert level.stderr.strip() == (
        "unibus: UNIBUS_LOG_LEVEL: 'loud' is not one of debug, info, warning, error"
    )


def test_json_logs_are_one_object_per_line(tmp_path: Path, open_nats_server: NatsServer) -> None:
    serve = start_cli(
        "serve", "--nats-url", open_nats_server.url, UNIBUS_LOG_FORMAT="json", UNIBUS_DATA_DIR=str(tmp_path)
    )
    try:
        assert serve.stdout is not None
        lines = []
        for line in serve.stdout:
            lines.append(line)
            if line.startswith("unibus control plane ready"):
                break
    finally:
        stop_process(serve)
    logged = [json.loads(line) for line in lines if not line.startswith("unibus control plane ready")]
    assert logged, lines
    assert all(set(entry) >= {"ts", "level", "logger", "msg"} for entry in logged)
    assert any(entry["logger"] == "unibus.app" and entry["msg"].startswith("serving ") for entry in logged)


async def test_json_goes_before_or_after_the_command_and_failures_are_json_too(
    users: tuple[User, User, User],
) -> None:
    alice, _, _ = users
    missing = await alice.run("--json", "room", "list")
    assert missing.code == 2 and missing.out == ""
    assert json.loads(missing.err)["error"].startswith("no identity at")

    before = (await alice.ok("--json", "keygen")).json()
    assert before["public_key"] == Identity.load(alice.identity_path).public_key
    created = (await alice.ok("--json", "room", "create", "club")).json()
    assert created["id"] == "club"
    assert (await alice.ok("room", "info", "club", "--json")).json()["encrypted"] is True

    refused = await alice.run("--json", "room", "info", "nowhere")
    assert refused.code == 1 and refused.out == ""
    assert json.loads(refused.err) == {"error": "room not found", "status": 404}
    typo = await alice.run("--json", "room", "lst")
    assert typo.code == 2 and "invalid choice: 'lst'" in json.loads(typo.err)["error"]

    # Every other command takes it too, in either place.
    assert (await alice.ok("health", "--json")).json()["healthy"] is True
    assert (await alice.ok("--json", "health")).json()["healthy"] is True
    assert "authorization" in (await alice.ok("--json", "boundary", "config")).json()["config"]
    sent = (await alice.ok("send", "club", "hi", "--json")).json()
    assert sent["room"] == "club" and sent["epoch"] == 1


async def test_human_output_is_words_not_python_values(users: tuple[User, User, User]) -> None:
    alice, _, _ = users
    await alice.ok("keygen")
    await alice.ok("room", "create", "words", "--name", "Words")
    info = (await alice.ok("room", "info", "words")).out
    assert "True" not in info and "None" not in info
    lines = {line[:10].strip(): line[10:].strip() for line in info.splitlines()}
    assert lines["room"] == "words (Words)"
    assert lines["encryption"] == "end to end, key epoch 1"
    assert lines["history"] == "persisted in stream UNIBUS_words"
    assert lines["your role"] == "owner"
    sent = (await alice.ok("send", "words", "hello")).out.strip()
    assert sent.startswith("sent ") and sent.endswith(" to words")


async def test_send_on_a_terminal_says_it_is_reading_stdin(tmp_path: Path, bounded_plane: Running) -> None:
    """Without text and with a terminal on stdin, `send` would otherwise wait in silence."""
    user = User(tmp_path / "tty", bounded_plane.nats_url)
    await user.ok("keygen")
    await user.ok("room", "create", "tty")
    controller, terminal = pty.openpty()
    try:
        send = await asyncio.create_subprocess_exec(
            *UNIBUS, "send", "tty", env=user.env, stdin=terminal, stdout=PIPE, stderr=PIPE
        )
        assert send.stderr is not None
        hint = await asyncio.wait_for(send.stderr.readline(), 60)
        assert hint.decode().strip() == "reading messages from stdin, one per line; Ctrl-D ends"
        os.write(controller, b"typed\n\x04")
        out, _ = await asyncio.wait_for(send.communicate(), 60)
    finally:
        os.close(controller)
        os.close(terminal)
    assert send.returncode == 0 and out.decode().strip().endswith(" to tty")
    # Piped input gets no hint: it is not waiting for a person.
    piped = await user.ok("send", "tty", stdin=b"piped\n")
    assert piped.err == ""


async def test_service_discovery_and_raw_requests_need_only_this_cli(
    users: tuple[User, User, User],
) -> None:
    """What the README does with the Go `nats` CLI, with `unibus` alone."""
    alice, bob, _ = users
    listed = (await bob.ok("--json", "service", "ls")).json()  # bob has no identity yet: a throwaway one
    assert [r["name"] for r in listed["replies"]] == ["unibus-control-plane"]
    assert "unibus-control-plane" in (await bob.ok("service", "ls")).out

    # As `nats micro`: `ls|list [NAME]`, `info|stats NAME [ID]`.
    instance = listed["replies"][0]["id"]
    named = (await bob.ok("--json", "service", "list", "unibus-control-plane")).json()
    assert named["subject"] == "$SRV.PING.unibus-control-plane" and len(named["replies"]) == 1
    info = (await bob.ok("service", "info", "--json")).json()["replies"][0]
    endpoints = {e["name"]: (e["subject"], e["queue_group"]) for e in info["endpoints"]}
    assert endpoints["history"] == ("$UNIBUS.CTL.rooms.*.history", "unibus")
    assert "$UNIBUS.CTL.rooms.*.history" in (await bob.ok("service", "info")).out
    one = (await bob.ok("--json", "service", "stats", "unibus-control-plane", instance)).json()
    assert one["subject"] == f"$SRV.STATS.unibus-control-plane.{instance}"
    assert [r["id"] for r in one["replies"]] == [instance]

    await alice.ok("keygen")
    await alice.ok("room", "create", "raw", "--plain")
    await alice.ok("send", "raw", "one")
    raw = await alice.ok("request", "$UNIBUS.CTL.rooms.raw.info")
    assert json.loads(raw.out)["id"] == "raw"
    history = (await alice.ok("--json", "request", "$UNIBUS.CTL.rooms.raw.history", "limit=5")).json()
    assert history["headers"]["Content-Type"] == "application/json"
    packed = await alice.ok(
        "request", "$UNIBUS.CTL.rooms.raw.history", "-H", "Accept: application/msgpack", "--json"
    )
    assert packed.json()["headers"]["Content-Type"] == "application/msgpack"
    assert "body_base64" in packed.json()

    stats = (await bob.ok("--json", "service", "stats")).json()["replies"][0]
    counts = {e["name"]: e["num_requests"] for e in stats["endpoints"]}
    assert counts["info"] >= 1 and counts["history"] >= 2
    ping = (await bob.ok("service", "ping", "--json")).json()["replies"]
    assert len(ping) == 1 and ping[0]["rtt_ms"] > 0

    await bob.ok("keygen")
    refused = await bob.run("request", "$UNIBUS.CTL.rooms.raw.history")
    assert refused.code == 1 and refused.err.strip() == "unibus: 403 not a member of this room"
    elsewhere = await alice.run("request", "$SRV.PING")
    assert elsewhere.code == 2 and "not a control subject" in elsewhere.err
    nobody = await bob.run("service", "info", "no-such-service")
    assert nobody.code == 1, nobody
    assert nobody.err.startswith("unibus: no responders available for request: nothing subscribes to ")
    assert "$SRV.INFO.no-such-service" in nobody.err


def test_serve_says_what_runs_and_a_taken_port_in_one_line(tmp_path: Path) -> None:
    """The ready lines name the auth mode, every URL and a next step; a second `serve` on
    the same ports fails with the server's own reason and what to change, not a traceback."""
    port, websocket = free_port(), free_port()
    ports = ("--port", str(port), "--websocket-port", str(websocket))
    first = start_cli("--json", "serve", "--data-dir", str(tmp_path / "one"), *ports, logs=False)
    try:
        assert first.stdout is not None
        ready = json.loads(first.stdout.readline())
        assert ready == {
            "ready": True,
            "nats_url": f"nats://127.0.0.1:{port}",
            "websocket_url": f"ws://127.0.0.1:{websocket}",
            "http_url": None,
            "metrics_url": None,
            "auth_mode": "enforce",
            "trust_boundary": True,
            "embedded": True,
            "monitor_url": None,
        }
        second = run_cli("serve", "--data-dir", str(tmp_path / "two"), *ports)
    finally:
        stop_process(first)
    assert second.returncode == 1, second
    line = second.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in second.stderr
    assert line.startswith("unibus: the embedded nats-server did not start: ")
    assert "address already in use" in line  # nats-server names the first port it could not bind
    assert f"127.0.0.1:{port}" in line or f"127.0.0.1:{websocket}" in line
    assert "UNIBUS_EMBEDDED_PORT" in line and "--nats-url" in line


def test_the_embedded_websocket_port_is_fixed_by_default(tmp_path: Path) -> None:
    """A browser's saved server URL must survive a restart: 8080 (the websocket port of
    every shipped configuration, docs/deploy.md) unless told otherwise."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8080))
        except OSError:
            pytest.skip("port 8080 is taken on this machine (a `make run` may be up)")
    port = free_port()
    serve = start_cli("serve", "--data-dir", str(tmp_path), "--port", str(port), logs=False)
    try:
        assert serve.stdout is not None
        lines = [serve.stdout.readline() for _ in range(4)]
    finally:
        stop_process(serve)
    assert lines[0].strip() == f"unibus control plane ready: nats nats://127.0.0.1:{port}"
    assert lines[1].startswith("auth enforce; trust boundary on")
    assert lines[2].strip() == "websocket for browsers: ws://127.0.0.1:8080"
    assert lines[3].startswith("next, in another terminal: `unibus keygen`")


def test_every_start_up_failure_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    """A listener's port taken, keys not made, a seed file missing: one line each, with
    what to change, and no traceback (exit 1 for a failure, 2 for a setting)."""
    embedded = ("--port", "0", "--websocket-port", "0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        cases = [
            (run_cli("serve", "--data-dir", str(tmp_path / "a"), *embedded, "--http", busy), 1, "(--http)"),
            (
                run_cli("serve", "--data-dir", str(tmp_path / "b"), *embedded, UNIBUS_METRICS_LISTEN=busy),
                1,
                "UNIBUS_METRICS_LISTEN",
            ),
            (run_cli("shim", "--listen", busy, "--nats-url", "nats://127.0.0.1:1"), 1, "(--listen)"),
            (
                run_cli(
                    "serve",
                    "--data-dir",
                    str(tmp_path / "c"),
                    *embedded,
                    "--keys-dir",
                    str(tmp_path / "none"),
                ),
                2,
                "unibus boundary init",
            ),
            (run_cli("shim", "--nkey", str(tmp_path / "absent.nk")), 2, "UNIBUS_NKEY (--nkey)"),
        ]
    for result, code, named in cases:
        assert result.returncode == code, result
        assert "Traceback" not in result.stderr, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("unibus: ") and named in last, result.stderr
        if code == 1:
            assert f"cannot listen on {busy}" in last and "in use" in last, last


@pytest.mark.parametrize("command", ["serve", "shim"])
def test_a_stop_while_nats_is_away_ends_at_once(tmp_path: Path, command: str) -> None:
    """Waiting for NATS is not a failure (an orchestrator may start it first), but it must
    never stop a SIGTERM: nats-py's own first-connect loop swallowed the cancellation and
    retried for ever. The wait is logged once, then every 10 s."""
    unreachable = f"nats://127.0.0.1:{free_port()}"
    extra = ["--data-dir", str(tmp_path)] if command == "serve" else ["--listen", "127.0.0.1:0"]
    process = start_cli("-v", command, "--nats-url", unreachable, *extra)
    assert process.stdout is not None
    for line in process.stdout:  # trying, and saying so
        if "Connect call failed" in line:
            break
    time.sleep(1.5)  # several attempts later
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=15)
    assert process.returncode == 0, out
    if command == "serve":
        assert "Connect call failed" not in out, out  # no repeat within 10 s


def test_a_reader_that_goes_away_is_not_an_error() -> None:
    """`unibus … | head -1`: the closed pipe ends the command quietly (141, as SIGPIPE
    would), with no traceback."""
    process = subprocess.Popen(
        [*UNIBUS, "boundary", "config"], env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the interpreter is even up: its first write fails
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == b""


async def test_a_start_refused_by_the_deployment_is_one_line(open_nats_server: NatsServer) -> None:
    """An interrupted restore's lock (docs/operations.md) stops an instance from starting:
    `unibus serve` says so in one line, exit 1, instead of a traceback."""
    nc = await nats.connect(open_nats_server.url)
    try:
        lock = restore_lock_name(CONTROL_PREFIX)
        await nc.jetstream().add_stream(name=lock, subjects=[lock])
    finally:
        await nc.close()
    refused = await asyncio.to_thread(run_cli, "serve", "--nats-url", open_nats_server.url)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("unibus: cannot start: a restore of this deployment") and lock in last


def test_a_second_serve_on_a_data_directory_in_use_is_refused(tmp_path: Path) -> None:
    """Following the port-in-use hint used to start a second nats-server on the same
    JetStream store, which rebuilt the first one's streams and rewrote its config. The
    data directory is held for as long as its server runs: a second `serve` names the
    holder's pid and exits 1, before it starts anything."""
    data = str(tmp_path / "data")
    embedded = ("--data-dir", data, "--port", "0", "--websocket-port", "0")
    first = start_cli("serve", *embedded, logs=False)
    try:
        assert first.stdout is not None
        assert first.stdout.readline().startswith("unibus control plane ready")
        config_before = (tmp_path / "data" / "nats" / "unibus-embedded.conf").read_text()
        second = run_cli("serve", *embedded)
        alone = run_cli("serve", "--nats-only", *embedded)
        assert (tmp_path / "data" / "nats" / "unibus-embedded.conf").read_text() == config_before
    finally:
        stop_process(first)
    for refused in (second, alone):
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
        line = refused.stderr.strip().splitlines()[-1]
        assert line.startswith(
            f"unibus: cannot start: data directory {tmp_path / 'data'} is in use by pid {first.pid}"
        )
        assert "--data-dir" in line
    # Once the first one stopped, the directory is free again (no stale lock to clear).
    again = start_cli("serve", *embedded, logs=False)
    try:
        assert again.stdout is not None
        assert again.stdout.readline().startswith("unibus control plane ready")
    finally:
        stop_process(again)


def _controlling_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is stdin, so the
    terminal's Ctrl-C (^C) is a SIGINT to it, as at a shell. SIGINT's default action is
    restored as a shell does for a foreground job: a suite started in the background of a
    shell without job control inherits SIGINT ignored, and the CLI would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.parametrize("nats_state", ["connected", "reconnecting"])
async def test_ctrl_c_during_tail_is_130_without_a_traceback(
    users: tuple[User, User, User], shipped_nats: NatsServer, nats_state: str
) -> None:
    """^C on a terminal ends `tail` with 130 and nothing on stderr but its own line, also
    while NATS restarts (the final drain used to raise "reconnecting" over the interrupt)."""
    alice, _, _ = users
    await alice.ok("keygen")
    await alice.ok("room", "create", "ctrlc")
    controller, terminal = pty.openpty()
    try:
        tail = await asyncio.create_subprocess_exec(
            *UNIBUS,
            "tail",
            "ctrlc",
            env=alice.env,
            stdin=terminal,
            stdout=terminal,
            stderr=PIPE,
            preexec_fn=_controlling_terminal,
        )
        assert tail.stderr is not None
        listening = await asyncio.wait_for(tail.stderr.readline(), 60)
        assert listening.decode().startswith("listening on unibus.room.ctrlc"), listening
        if nats_state == "reconnecting":
            await asyncio.to_thread(shipped_nats.stop)
            await asyncio.sleep(1.0)  # the client has seen the server go and is retrying
        os.write(controller, b"\x03")
        _, err = await asyncio.wait_for(tail.communicate(), 60)
    finally:
        os.close(controller)
        os.close(terminal)
        if nats_state == "reconnecting":
            await asyncio.to_thread(shipped_nats.start)
    assert tail.returncode == 130, err.decode()
    assert err.decode() == "", err.decode()


def test_a_normal_stop_says_stopped_once_and_the_dev_banner_is_true(tmp_path: Path) -> None:
    """Every normal stop logged "nats: disconnected" three times (one per connection
    closing) and never that it stopped; in dev mode the banner claimed peers must connect
    with their own nkey, which dev does not require."""
    serve = start_cli(
        "serve", "--auth", "dev", "--data-dir", str(tmp_path), "--port", "0", "--websocket-port", "-1"
    )
    assert serve.stdout is not None
    lines = []
    for line in serve.stdout:
        lines.append(line)
        if line.startswith("auth dev;"):
            break
    serve.send_signal(signal.SIGINT)
    rest, _ = serve.communicate(timeout=30)
    assert serve.returncode == 0, rest
    assert lines[-1].startswith("auth dev; trust boundary on, relaxed for demos: connections without an nkey")
    assert "own nkey" not in lines[-1]
    logged = "".join(lines) + rest
    assert "disconnected" not in logged, logged
    assert [line for line in logged.splitlines() if line.endswith("stopped")] == [
        line for line in logged.splitlines() if "unibus.runner: control plane stopped" in line
    ]
    assert logged.count("control plane stopped") == 1, logged


async def test_nothing_to_send_and_no_unibus_frame_are_not_success(users: tuple[User, User, User]) -> None:
    """`send` with empty stdin exited 0 having sent nothing; `history` of frames that are
    not unibus frames printed nothing and exited 0. Both now say so, and fail."""
    alice, _, _ = users
    await alice.ok("keygen")
    await alice.ok("room", "create", "odd")
    empty = await alice.run("send", "odd", stdin=b"\n  \n")
    assert (
        empty.code == 1
        and empty.err.strip() == "unibus: nothing sent: no text given and stdin held no line to send"
    )

    identity = Identity.load(alice.identity_path)
    nc = await nats.connect(
        alice.env["UNIBUS_NATS_URL"],
        nkeys_seed_str=identity.seed,
        inbox_prefix=f"_INBOX.{identity.public_key}",
    )
    try:
        await nc.publish("unibus.room.odd", b"not a unibus frame")
        await nc.flush()
    finally:
        await nc.close()
    history = Result(-1, "", "")

    async def refused() -> bool:
        nonlocal history
        history = await alice.run("history", "odd")
        return bool(history.err)

    await wait_until(refused, "the foreign frame is stored and reported", every_s=0.1)
    assert history.code == 1 and history.out == "", history
    assert history.err.strip().endswith(
        "unibus: 1 of 1 frames are not unibus messages this identity can open"
    )

    await alice.ok("send", "odd", "a real one")
    mixed = Result(-1, "", "")

    async def stored() -> bool:
        nonlocal mixed
        mixed = await alice.run("history", "odd")
        return bool(mixed.out)

    await wait_until(stored, "the real message is stored", every_s=0.1)
    assert mixed.code == 0 and mixed.out.rstrip().endswith("a real one")
    assert "1 of 2 frames" in mixed.err


def test_a_service_refused_by_nats_says_which_setting_at_warning(
    tmp_path: Path, shipped_nats: NatsServer
) -> None:
    """Seeds that are not the ones the server's boundary.env names: the refusal is a
    WARNING that names UNIBUS_KEYS_DIR, not a silent retry loop."""
    assert run_cli("boundary", "init", str(tmp_path / "other")).returncode == 0
    serve = start_cli("serve", "-s", shipped_nats.url, "--keys-dir", str(tmp_path / "other"))
    try:
        assert serve.stdout is not None
        for line in serve.stdout:
            if "Authorization Violation" in line:
                break
    finally:
        stop_process(serve)
    assert " WARNING unibus.wire.connection: nats: " in line, line
    assert "NATS refused the control plane's credentials; check UNIBUS_KEYS_DIR" in line


def test_the_embedded_servers_monitoring_is_opt_in_and_on_loopback(tmp_path: Path) -> None:
    """Off by default; with UNIBUS_EMBEDDED_MONITOR_PORT it answers on 127.0.0.1 only.
    The embedded server writes its log itself and rotates it."""
    embedded = ("--data-dir", str(tmp_path), "--port", "0", "--websocket-port", "-1")
    serve = start_cli("--json", "serve", *embedded, logs=False, UNIBUS_EMBEDDED_MONITOR_PORT="0")
    try:
        assert serve.stdout is not None
        monitor_url = json.loads(serve.stdout.readline())["monitor_url"]
        assert monitor_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{monitor_url}/healthz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        stop_process(serve)
    conf = (tmp_path / "nats" / "unibus-embedded.conf").read_text()
    assert "\nhttp: 127.0.0.1:-1\n" in conf and "logfile_size_limit: 10MB" in conf
    plain = start_cli("--json", "serve", *embedded, logs=False)
    try:
        assert plain.stdout is not None
        assert json.loads(plain.stdout.readline())["monitor_url"] is None
    finally:
        stop_process(plain)
    assert "\nhttp:" not in (tmp_path / "nats" / "unibus-embedded.conf").read_text()


async def test_ctrl_c_while_send_waits_for_typed_lines_is_130(tmp_path: Path, bounded_plane: Running) -> None:
    """One ^C ends a `send` that is reading a terminal (inside the event loop the blocking
    read let the first one pass unnoticed)."""
    user = User(tmp_path / "typing", bounded_plane.nats_url)
    await user.ok("keygen")
    controller, terminal = pty.openpty()
    try:
        send = await asyncio.create_subprocess_exec(
            *UNIBUS,
            "send",
            "anywhere",
            env=user.env,
            stdin=terminal,
            stdout=PIPE,
            stderr=PIPE,
            preexec_fn=_controlling_terminal,
        )
        assert send.stderr is not None
        await asyncio.wait_for(send.stderr.readline(), 60)  # the "reading messages" hint
        os.write(controller, b"half a line")
        os.write(controller, b"\x03")
        out, err = await asyncio.wait_for(send.communicate(), 20)
    finally:
        os.close(controller)
        os.close(terminal)
    assert send.returncode == 130 and out == b"" and err == b"", err.decode()
