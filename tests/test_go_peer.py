"""A room member's own Go client against its room's stream, with the trust boundary on.

tests/go/member is built in GOPATH mode from Debian's golang-github-nats-io-go-nats-dev
(nats.go 1.22: the legacy JetStream API, no `jetstream` package) and run as alice, a
member of the persisted room `vault`, on the shipped deploy/nats config. Her core-NATS
publish to the room must pass; every JetStream call, even a read of her own room's stream
or a consumer on it, must be refused by nats-server itself (docs/security.md says why),
with the stream unchanged afterwards.
In CI a missing Go toolchain or package fails the test; elsewhere it skips and says what
to install.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest

from unibus.client import Identity, Peer
from unibus.runner import Running

from harness import golang
from harness.boundary import connect_as

MEMBER = Path(__file__).parent / "go" / "member"

# What each operation of tests/go/member must do: True allowed, False refused.
EXPECTED = {
    "stream_info": False,
    "get_msg_1": False,
    "ordered_consumer_next": False,
    "ephemeral_pull_fetch": False,
    "durable_pull_fetch_delete": False,
    "create_or_update_stream": False,
    "purge_stream": False,
    "delete_stream": False,
    "delete_msg_1": False,
    "other_stream_info": False,
    "kv_rooms_get": False,
    "publish_frame": True,
}
# The JetStream API call each refusal must name in the server's permissions violation.
REFUSED_SUBJECT = {
    "stream_info": "$JS.API.STREAM.INFO.UNIBUS_vault",
    "create_or_update_stream": "$JS.API.STREAM.UPDATE.UNIBUS_vault",
    "purge_stream": "$JS.API.STREAM.PURGE.UNIBUS_vault",
    "delete_stream": "$JS.API.STREAM.DELETE.UNIBUS_vault",
    "delete_msg_1": "$JS.API.STREAM.MSG.DELETE.UNIBUS_vault",
    "other_stream_info": "$JS.API.STREAM.INFO.UNIBUS_other",
    "kv_rooms_get": "$JS.API.STREAM.INFO.KV_UNIBUS_ROOMS",
}


@pytest.fixture(scope="module")
def member_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/go/member, built once per module, offline, against the Debian packages."""
    return golang.build(MEMBER, tmp_path_factory.mktemp("go-member"), "member")


@pytest.fixture
async def rooms(bounded_plane: Running, alice: Identity, bob: Identity) -> AsyncIterator[None]:
    """`vault` (alice's, one frame stored) and `other` (bob's): both encrypted and persisted."""
    owner = await connect_as(bounded_plane.nats_url, alice)
    stranger = await connect_as(bounded_plane.nats_url, bob)
    try:
        await Peer(owner.nc, alice).create_room("vault")
        await Peer(owner.nc, alice).publish("vault", b"secret one")
        await Peer(stranger.nc, bob).create_room("other")
        yield
    finally:
        await owner.nc.close()
        await stranger.nc.close()


async def run_member(binary: Path, url: str, identity: Identity, seed_dir: Path) -> dict[str, dict[str, Any]]:
    seed = seed_dir / "member.seed"
    identity.save(seed)
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        f"-url={url}",
        f"-seed={seed}",
        "-room=vault",
        "-other=other",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    return {line["op"]: line for line in lines}


async def test_a_members_go_client_publishes_and_gets_no_jetstream(
    member_binary: Path, bounded_plane: Running, rooms: None, alice: Identity, tmp_path: Path
) -> None:
    js = bounded_plane.nc.jetstream()
    before = await js.stream_info("UNIBUS_vault")
    assert before.state.messages == 1

    started = time.monotonic()
    results = await run_member(member_binary, bounded_plane.nats_url, alice, tmp_path)
    elapsed = time.monotonic() - started

    assert list(results) == list(EXPECTED)
    observed = {op: line["ok"] for op, line in results.items()}
    assert observed == EXPECTED, json.dumps(results, indent=1)
    for op, allowed in EXPECTED.items():
        if not allowed:
            assert 'permissions violation for publish to "$js.api.' in results[op]["error"].lower(), op
    for op, subject in REFUSED_SUBJECT.items():
        # No reply ever comes: nats.go 1.22 hands the server's -ERR to the async error
        # handler only, and the request ends at its deadline or when the program cancels it
        # on that violation ("context canceled"; PurgeStream and KeyValue take no context).
        error = results[op]["error"].lower()
        assert f'nats: permissions violation for publish to "{subject.lower()}"' in error, (op, error)
        assert "context canceled" in error or "context deadline exceeded" in error, (op, error)
    for op, allowed in EXPECTED.items():
        if allowed:
            assert results[op]["error"] == "", (op, results[op])
    assert elapsed < 15, f"the Go member took {elapsed:.1f} s"

    after = await js.stream_info("UNIBUS_vault")
    assert after.config == before.config
    assert after.state.messages == 2  # the frame alice's Go client published, nothing removed
    assert after.state.first_seq == 1 and after.state.last_seq == 2
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.consumer_info("UNIBUS_vault", "go-member-durable")
    assert (await js.stream_info("UNIBUS_other")).state.messages == 0
