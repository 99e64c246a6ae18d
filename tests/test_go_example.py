"""examples/go/peer, the Go example peer, against a real control plane with the trust
boundary on (the shipped deploy/nats config), and its signing against tests/vectors/.

It is built offline in GOPATH mode against Debian's nats.go and nkeys (harness.golang):
in CI a missing Go toolchain or package fails these tests; elsewhere they skip and say
what to install. What the Go peer wrote is read back through the Python client, so the
two implementations of docs/protocol.md check each other byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from unibus.client import ControlClient, Identity, Peer
from unibus.runner import Running

from harness import continuity, golang
from harness.boundary import connect_as

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "examples" / "go" / "peer"
VECTORS = Path(__file__).parent / "vectors"
EXIT_SERVICE_ERROR = 3


@pytest.fixture(scope="module")
def peer_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/go/peer, built once per module, offline, against the Debian packages."""
    return golang.build(PEER, tmp_path_factory.mktemp("go-peer"), "peer")


@dataclass
class Run:
    code: int
    report: dict[str, Any]
    """The JSON object the peer printed: its report, or {"error": ...}."""
    stderr: str


async def run_peer(binary: Path, url: str, identity: Identity, home: Path, *args: str) -> Run:
    seed = home / f"{identity.public_key}.seed"
    identity.save(seed)
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        f"-url={url}",
        f"-seed={seed}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    report = json.loads(stdout) if stdout.strip() else {}
    return Run(proc.returncode, report, stderr.decode())


def frames(encoded: list[str]) -> list[bytes]:
    return [base64.b64decode(f, validate=True) for f in encoded]


def test_the_example_is_gofmt_and_vet_clean(tmp_path: Path) -> None:
    go = golang.toolchain()
    unformatted = subprocess.run(
        [str(Path(go).resolve().parent / "gofmt"), "-l", str(PEER)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (unformatted.returncode, unformatted.stdout) == (0, ""), unformatted.stderr
    vet = golang.run_go(go, ["vet", "."], PEER, tmp_path / "gopath")
    assert vet.returncode == 0, vet.stderr


def test_the_go_signing_and_frames_reproduce_the_vectors(peer_binary: Path) -> None:
    result = subprocess.run(
        [str(peer_binary), f"-vectors={VECTORS}"], capture_output=True, text=True, timeout=60
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    wanted = [
        ("request_signatures.json", c["subject"])
        for c in json.loads((VECTORS / "request_signatures.json").read_text())
    ]
    wanted += [("frames.json", c["name"]) for c in json.loads((VECTORS / "frames.json").read_text())]
    assert [(line["file"], line["case"]) for line in lines] == wanted
    assert [line for line in lines if not line["ok"]] == []
    assert result.returncode == 0, result.stderr


async def test_the_go_peer_creates_publishes_and_reads_back_its_frames(
    peer_binary: Path, bounded_plane: Running, alice: Identity, tmp_path: Path
) -> None:
    run = await run_peer(
        peer_binary,
        bounded_plane.nats_url,
        alice,
        tmp_path,
        "-room=go-lobby",
        "-text=hello from go",
        "-count=5",
        "-page=2",
    )
    assert run.code == 0, run.stderr
    assert run.report["identity"] == alice.public_key
    published = frames(run.report["published"])
    assert len(published) == 5

    me = await connect_as(bounded_plane.nats_url, alice)
    try:
        control = ControlClient(me.nc, alice)
        room = await control.info("go-lobby")
        assert room["mode"] == "matrix" and room["stream"] == "UNIBUS_go-lobby"
        assert room["owner"] == alice.public_key and room["role"] == "owner"
        assert room["encrypted"] is False
        assert run.report["room"]["subject"] == room["subject"]

        stored = [raw async for raw in control.backlog("go-lobby")][::-1]  # oldest first
        assert stored == published
        assert frames(run.report["history"]) == stored
        assert run.report["pages"] == 3  # 5 frames, 2 a page, paged back with before=first_seq

        # They are frames of docs/protocol.md: signed by alice for this room, and readable.
        opened = [await (await Peer(me.nc, alice).room("go-lobby")).open(raw) for raw in stored]
        assert [(m.ok, m.sender) for m in opened] == [(True, alice.public_key)] * 5
        assert [m.data for m in opened if m.ok] == [f"hello from go {i}".encode() for i in range(1, 6)]
    finally:
        await me.nc.close()


async def test_a_go_peer_that_is_not_a_member_gets_403_from_history(
    peer_binary: Path, bounded_plane: Running, alice: Identity, bob: Identity, tmp_path: Path
) -> None:
    owner = await connect_as(bounded_plane.nats_url, alice)
    try:
        await Peer(owner.nc, alice).create_room("go-private", encrypted=False)
        await Peer(owner.nc, alice).publish("go-private", b"members only")

        run = await run_peer(
            peer_binary,
            bounded_plane.nats_url,
            bob,
            tmp_path,
            "-room=go-private",
            "-create=false",
            "-count=0",
        )
        assert run.code == EXIT_SERVICE_ERROR, run.stderr
        subject = "$UNIBUS.CTL.rooms.go-private.history"
        assert run.report == {
            "error": {"subject": subject, "code": 403, "message": "not a member of this room"}
        }
        assert run.stderr == f"peer: {subject}: 403 not a member of this room\n"

        # Asked to publish, it stops at the room's info, before any frame leaves.
        run = await run_peer(
            peer_binary, bounded_plane.nats_url, bob, tmp_path, "-room=go-private", "-create=false"
        )
        assert run.code == EXIT_SERVICE_ERROR, run.stderr
        assert run.report["error"]["code"] == 403

        assert len((await ControlClient(owner.nc, alice).history("go-private")).frames) == 1
    finally:
        await owner.nc.close()


class GoFollower:
    """`peer -follow` as a process, restartable from its cursor file; what it printed is
    kept across its restarts."""

    def __init__(self, binary: Path, url: str, identity: Identity, room: str, home: Path) -> None:
        self.seed = home / "follower.seed"
        identity.save(self.seed)
        self.cursor = home / "follower.cursor"
        self.args = [str(binary), f"-url={url}", f"-seed={self.seed}", f"-room={room}", "-follow"]
        self.lines: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.readers: list[asyncio.Task[None]] = []
        self.stdout_limit = 2**16
        """asyncio reads ahead of the reader up to twice this, then stops reading the pipe."""

    async def start(self, *extra: str) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args,
            f"-cursor={self.cursor}",
            *extra,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=self.stdout_limit,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.readers = [
            asyncio.create_task(self._read(self.proc.stdout, self._keep_line)),
            asyncio.create_task(self._read(self.proc.stderr, self.notes.append)),
        ]

    def pause_output(self) -> None:
        """Stop reading what it prints: once the pipe and asyncio's read-ahead (twice
        `stdout_limit`) are full its writes block, as behind a slow consumer of its output."""
        self.readers[0].cancel()

    def resume_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        self.readers[0] = asyncio.create_task(self._read(self.proc.stdout, self._keep_line))

    def _keep_line(self, line: str) -> None:
        self.lines.append(json.loads(line))

    @staticmethod
    async def _read(stream: asyncio.StreamReader, keep: Callable[[str], None]) -> None:
        async for line in stream:
            keep(line.decode().rstrip("\n"))

    async def listening(self, within_s: float = 20.0) -> None:
        """Until it has subscribed and read where the room stands."""

        async def said_so() -> bool:
            return any("listening on" in note for note in self.notes)

        await continuity.wait_for(said_so, within_s, "the follower listens")

    async def exited(self, within_s: float = 20.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), within_s)
        await asyncio.gather(*self.readers)
        return code

    async def kill(self) -> None:
        """What a test leaves running, gone (a no-op once it exited)."""
        if self.readers and self.readers[0].cancelled():
            self.resume_output()  # asyncio waits for the pipes to close, not only the exit
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self) -> None:
        """SIGTERM: it stops between two frames, its cursor naming the last one printed."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        assert await self.exited() == 0, self.notes

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def reconnects(self) -> int:
        return sum(1 for note in self.notes if "reconnected" in note)

    @property
    def frames(self) -> list[tuple[int, bytes]]:
        return [(line["seq"], base64.b64decode(line["frame"])) for line in self.lines if "seq" in line]

    @property
    def gaps(self) -> list[dict[str, int]]:
        return [line["gap"] for line in self.lines if "gap" in line]


@pytest.mark.timeout(240)  # the scenario alone publishes for 16 s; the suite's 2 cores are shared
async def test_a_go_follower_gets_every_frame_once_across_cuts_expiries_and_restarts(
    peer_binary: Path, tmp_path: Path
) -> None:
    async with continuity.stage(tmp_path) as stage:
        follower = GoFollower(peer_binary, stage.server.url, stage.reader, stage.room, tmp_path)
        await follower.start()
        try:
            await follower.listening()
            sent = await continuity.run(stage, follower)
            stored = await stage.stored(len(sent))
            assert [frame for _, frame in stored] == sent

            async def caught_up() -> bool:
                return len(follower.frames) >= len(stored)

            await continuity.wait_for(caught_up, 60, f"the follower delivered {len(stored)} frames")
            assert follower.frames == stored  # each once, in stream order, with its sequence
            assert follower.gaps == []
            # It lived through cuts, a NATS restart and expired JWTs (a 3 s TTL), not one connection.
            assert await follower.reconnects() >= 6, follower.notes

            # Removed from the room, it ends with the control plane's 403.
            await stage.owner.remove_member(stage.room, stage.reader.public_key)
            assert await follower.exited() == EXIT_SERVICE_ERROR, follower.notes
            assert follower.lines[-1]["error"]["code"] == 403
        finally:
            await follower.kill()


async def test_a_go_follower_reports_the_frames_retention_removed(peer_binary: Path, tmp_path: Path) -> None:
    async with continuity.stage(tmp_path) as stage:
        sent = await continuity.publish(stage, 6, 0)
        await stage.purge_before(4, len(sent))  # frames 1-3 are gone
        follower = GoFollower(peer_binary, stage.server.url, stage.reader, stage.room, tmp_path)
        follower.cursor.write_text("1\n")  # it had read frame 1 before it stopped
        await follower.start()

        async def caught_up() -> bool:
            return len(follower.frames) >= 3

        await continuity.wait_for(caught_up, 30, "the follower delivered frames 4-6")
        await follower.stop()
        assert follower.lines[0] == {"gap": {"first": 2, "last": 3}}
        assert follower.frames == list(zip([4, 5, 6], sent[3:], strict=True))
        assert follower.cursor.read_text() == "6\n"
        assert "frames 2-3 are no longer stored" in "\n".join(follower.notes)


async def test_a_go_follower_waits_for_history_behind_a_live_copy(peer_binary: Path, tmp_path: Path) -> None:
    async with continuity.stage(tmp_path, jwt_ttl_s=900) as stage:
        follower = GoFollower(peer_binary, stage.server.url, stage.reader, stage.room, tmp_path)
        await follower.start()
        try:
            await follower.listening()

            async def delivered() -> int:
                return len(follower.frames) + len(follower.gaps)

            stored = await continuity.ahead_of_history(stage, delivered)
            assert follower.frames == stored  # each once, in stream order: no gap, no early copy
            assert follower.gaps == []
            await follower.stop()
        finally:
            await follower.kill()


async def test_a_busy_go_follower_holds_few_live_copies_and_loses_none(
    peer_binary: Path, tmp_path: Path
) -> None:
    """Its output stops being read while the room floods, so its writes block: nats.go
    drops the copies past `-live-buffer` and says so (a slow consumer); the follower says
    so too, and once its output flows again prints every frame once, in order, the
    dropped ones read from history."""
    async with continuity.stage(tmp_path, jwt_ttl_s=900) as stage:
        follower = GoFollower(peer_binary, stage.server.url, stage.reader, stage.room, tmp_path)
        follower.stdout_limit = 4096
        await follower.start("-live-buffer=8")
        try:
            await follower.listening()
            follower.pause_output()
            # About 37 bytes a line: 5,000 lines are about three times what the 64 KiB
            # pipe and the 8 KiB read-ahead hold.
            sent = await continuity.publish(stage, 5000, 0)
            stored = await stage.stored(len(sent))

            async def said() -> bool:
                return any("live copies dropped while busy" in note for note in follower.notes)

            await continuity.wait_for(said, 30, "dropped copies reported while the output is blocked")
            assert int(follower.cursor.read_text()) < len(stored)  # its writes are blocked
            follower.resume_output()

            async def caught_up() -> bool:
                return len(follower.frames) >= len(stored)

            await continuity.wait_for(caught_up, 60, f"the follower delivered {len(stored)} frames")
            assert follower.frames == stored and follower.gaps == []
            await follower.stop()
        finally:
            await follower.kill()


async def test_a_go_follower_takes_up_a_granted_room_and_checks_a_revoked_notice(
    peer_binary: Path, tmp_path: Path
) -> None:
    async with continuity.stage(tmp_path, jwt_ttl_s=900) as stage:
        follower = GoFollower(peer_binary, stage.server.url, stage.reader, stage.room, tmp_path)
        await follower.start()
        try:
            await follower.listening()
            sent = await continuity.publish(stage, 1, 0)

            async def delivered() -> bool:
                return [frame for _, frame in follower.frames] == sent

            await continuity.wait_for(delivered, 20, "the follower delivered the first frame")
            assert not [n for n in follower.notes if "reconnected" in n]

            # Added to another room, which cuts nobody: the control plane's notice makes it
            # re-authorize by itself, once, and its connection then holds the new room.
            assert await continuity.granted_another_room(stage, follower) == 1, follower.notes

            # "revoked" for a room it is still in (forged): it asks, and goes on.
            await stage.notify("revoked", stage.room)
            sent += await continuity.publish(stage, 1, 0, first=2)
            await continuity.wait_for(delivered, 20, "the follower delivered the second frame")
            assert follower.proc is not None and follower.proc.returncode is None
            await follower.stop()
        finally:
            await follower.kill()


async def test_a_go_follower_outlives_a_control_plane_outage(peer_binary: Path, tmp_path: Path) -> None:
    """While no control plane answers the auth callout, every reconnect is refused with
    "Authorization Violation". nats.go gives up for good after the same auth error twice
    unless told otherwise; a peer must be back once the control plane is."""
    async with continuity.stage(tmp_path, jwt_ttl_s=900) as stage:
        follower = GoFollower(peer_binary, stage.server.url, stage.reader, stage.room, tmp_path)
        await follower.start("-after=0")
        try:
            await follower.listening()
            await stage.stop_plane()
            await stage.kick()
            sent = await continuity.publish(stage, 3, 0)
            await asyncio.sleep(6)  # several refused reconnects (each waits out the callout)
            assert follower.proc is not None and follower.proc.returncode is None, follower.notes
            await stage.start_plane()

            async def delivered() -> bool:
                return [frame for _, frame in follower.frames] == sent

            await continuity.wait_for(delivered, 30, "the follower delivered what was sent meanwhile")
            await follower.stop()
        finally:
            await follower.kill()
