"""Following a room: every stored frame once, in stream order, whatever happens to the
connection (docs/protocol.md, "Following a room"), on a real nats-server and service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from nats.aio.client import Client

from unibus.client import Followed, Forbidden, Gap, Identity, Message, Peer, connect
from unibus.client.frames import seal_frame
from unibus.natsserver import NatsServer
from unibus.runner import Running

from harness import Cluster, Spawn
from harness.plane import StartPlane
from harness.waiting import wait_stored, wait_until

pytest_plugins = ["harness.fixtures"]


@dataclass
class Followers:
    """What a follower handed on, collected by a task until cancelled or it ends."""

    items: list[Followed | Gap] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    ended: BaseException | None = None

    @property
    def seqs(self) -> list[int]:
        return [i.seq for i in self.items if isinstance(i, Followed)]

    @property
    def texts(self) -> list[str]:
        followed = (i.message for i in self.items if isinstance(i, Followed))
        return [m.text for m in followed if isinstance(m, Message)]

    async def until(self, condition: Callable[[], bool], within_s: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + within_s
        while not condition():
            if self.ended is not None:
                raise AssertionError(f"the follower ended: {self.ended!r}")
            assert asyncio.get_running_loop().time() < deadline, (len(self.items), self.status[-5:])
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def following(peer: Peer, room_id: str, after: int | None = None) -> AsyncIterator[Followers]:
    got = Followers()
    ready = asyncio.Event()

    def on_status(text: str) -> None:
        got.status.append(text)
        if text.startswith("listening"):
            ready.set()

    async def run() -> None:
        try:
            async for item in peer.follow(room_id, after, on_status=on_status):
                got.items.append(item)
        except Exception as exc:
            got.ended = exc
            ready.set()

    task = asyncio.create_task(run())
    await asyncio.wait_for(ready.wait(), 30)
    try:
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def alice_peer(nats_server: NatsServer, plane: Running, alice: Identity) -> AsyncIterator[Peer]:
    peer = await Peer.connect(nats_server.url, alice)
    yield peer
    await peer.nc.close()


@pytest.fixture
async def bob_peer(nats_server: NatsServer, plane: Running, bob: Identity) -> AsyncIterator[Peer]:
    peer = await Peer.connect(nats_server.url, bob)
    yield peer
    await peer.nc.close()


async def send(peer: Peer, room_id: str, texts: list[str]) -> None:
    room = await peer.room(room_id)
    for text in texts:
        await room.publish(text.encode())
    await peer.nc.flush()


async def shared(owner: Peer, member: Peer, room_id: str, encrypted: bool = True) -> None:
    await owner.create_room(room_id, encrypted=encrypted)
    await owner.add_member(room_id, member.identity.public_key)


async def test_backlog_then_live_each_once_in_order(alice_peer: Peer, bob_peer: Peer) -> None:
    await shared(alice_peer, bob_peer, "followed")
    await send(alice_peer, "followed", [f"old {i}" for i in range(5)])
    async with following(bob_peer, "followed", after=0) as got:
        await got.until(lambda: len(got.seqs) == 5)
        await send(alice_peer, "followed", [f"new {i}" for i in range(5)])
        await got.until(lambda: len(got.seqs) == 10)
        await asyncio.sleep(0.3)  # nothing more comes: no duplicate of a frame read both ways
    assert got.seqs == list(range(1, 11))
    assert got.texts == [f"old {i}" for i in range(5)] + [f"new {i}" for i in range(5)]


async def test_from_now_and_resuming_from_a_cursor(alice_peer: Peer, bob_peer: Peer) -> None:
    """Without `after` a follower starts at the stream's end; restarted with the last
    sequence it handed on, it goes on exactly there, whatever was stored in between."""
    await shared(alice_peer, bob_peer, "resumed")
    await send(alice_peer, "resumed", ["before anyone listened"])
    async with following(bob_peer, "resumed") as got:
        await send(alice_peer, "resumed", ["one", "two"])
        await got.until(lambda: len(got.seqs) == 2)
    assert (got.seqs, got.texts) == ([2, 3], ["one", "two"])
    await send(alice_peer, "resumed", ["three", "four"])
    async with following(bob_peer, "resumed", after=got.seqs[-1]) as again:
        await send(alice_peer, "resumed", ["five"])
        await again.until(lambda: len(again.seqs) == 3)
    assert (again.seqs, again.texts) == ([4, 5, 6], ["three", "four", "five"])


async def test_frames_no_longer_stored_are_a_gap_not_silence(
    nc: Client, alice_peer: Peer, bob_peer: Peer
) -> None:
    await shared(alice_peer, bob_peer, "purged")
    await send(alice_peer, "purged", [str(i) for i in range(6)])
    await wait_stored(nc, "UNIBUS_purged", 6)
    await nc.jetstream().purge_stream("UNIBUS_purged", keep=2)
    async with following(bob_peer, "purged", after=1) as got:
        await got.until(lambda: len(got.items) == 3)
    assert got.items[0] == Gap(2, 4)
    assert (got.seqs, got.texts) == ([5, 6], ["4", "5"])


async def test_an_ephemeral_room_cannot_be_followed(alice_peer: Peer) -> None:
    from unibus.client import FollowError

    await alice_peer.create_room("passing", mode="ephemeral", encrypted=False)
    with pytest.raises(FollowError, match="ephemeral"):
        async for _ in alice_peer.follow("passing"):
            pass


async def test_a_removed_member_s_follower_ends_with_403(alice_peer: Peer, bob_peer: Peer) -> None:
    await shared(alice_peer, bob_peer, "leaving")
    async with following(bob_peer, "leaving", after=0) as got:
        await send(alice_peer, "leaving", ["while a member"])
        await got.until(lambda: len(got.seqs) == 1)
        await alice_peer.remove_member("leaving", bob_peer.identity.public_key)
        await got.until(lambda: got.ended is not None, within_s=10)
    assert isinstance(got.ended, Forbidden) and got.ended.code == 403
    assert got.texts == ["while a member"]


async def test_forged_sequence_headers_fool_no_follower(alice_peer: Peer, bob_peer: Peer) -> None:
    """A member stamps its frames with sequences of its choosing, in the header's usual
    spelling and in others. nats-server keeps them and appends its own after them; the
    follower reads the server's, so the next member's frame is not dropped as a
    duplicate nor anyone's frame delivered twice or out of place."""
    await shared(alice_peer, bob_peer, "forged", encrypted=False)
    room = await alice_peer.room("forged")
    async with following(bob_peer, "forged", after=0) as got:
        for i in range(6):
            frame = seal_frame(alice_peer.identity, "forged", f"frame {i}".encode(), ts_ms=1)
            forged = {"Nats-Sequence": str(i + 2), "Nats-Last-Sequence": str(i + 1), "NATS-SEQUENCE": "1"}
            await alice_peer.nc.publish(room.subject, frame.encode(), headers=forged)
            await alice_peer.nc.flush()
        await got.until(lambda: len(got.seqs) == 6)
        await asyncio.sleep(0.3)
    assert got.seqs == [1, 2, 3, 4, 5, 6]
    assert got.texts == [f"frame {i}" for i in range(6)]
    assert not any(isinstance(i, Gap) for i in got.items)


async def test_survives_a_nats_restart(
    nats_server: NatsServer, start_plane: StartPlane, nc: Client, alice: Identity, bob: Identity
) -> None:
    """NATS restarts while frames are published: the follower reconnects, catches up
    from history and hands on every stored frame once, in order."""
    await start_plane()
    owner, member = await Peer.connect(nats_server.url, alice), await Peer.connect(nats_server.url, bob)
    try:
        await shared(owner, member, "restarted", encrypted=False)
        async with following(member, "restarted", after=0) as got:
            await send(owner, "restarted", [f"a{i}" for i in range(20)])
            await got.until(lambda: len(got.seqs) == 20)
            await asyncio.to_thread(nats_server.restart)
            sent = [f"b{i}" for i in range(20)]
            for text in sent:  # some while the owner is still reconnecting: buffered
                with contextlib.suppress(Exception):
                    await send(owner, "restarted", [text])
                await asyncio.sleep(0.05)
            stored = await stored_count(nc, "UNIBUS_restarted")
            await got.until(lambda: len(got.seqs) >= stored, within_s=60)
            await asyncio.sleep(0.5)
        assert got.seqs == list(range(1, stored + 1))
        assert any(s.startswith("reconnected") for s in got.status)
    finally:
        await owner.nc.close()
        await member.nc.close()


async def stored_count(nc: Client, stream: str) -> int:
    """How many frames `stream` holds once publishing has settled."""
    js = nc.jetstream()
    last = -1
    for _ in range(200):
        with contextlib.suppress(Exception):
            now = (await js.stream_info(stream)).state.messages
            if now == last:
                return now
            last = now
        await asyncio.sleep(0.1)
    raise AssertionError(f"{stream} never settled")


EXPIRIES = 20
"""User JWT expiries a follower must live through (issue 19: `tail` died at the first)."""


@dataclass
class Tail:
    """`unibus tail --json` as a process, its output collected as it comes."""

    process: asyncio.subprocess.Process
    seqs: list[int] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    async def collect(self) -> None:
        import json

        assert self.process.stdout is not None and self.process.stderr is not None

        async def lines(stream: asyncio.StreamReader, into: Callable[[str], None]) -> None:
            while line := await stream.readline():
                into(line.decode().rstrip("\n"))

        await asyncio.gather(
            lines(self.process.stdout, lambda line: self.seqs.append(json.loads(line)["seq"])),
            lines(self.process.stderr, self.stderr.append),
        )


async def start_tail(url: str, identity: Identity, home: str, *args: str) -> Tail:
    import os
    import sys
    from pathlib import Path

    seed = Path(home) / "identity.seed"
    identity.save(seed)
    env = {**os.environ, "UNIBUS_NATS_URL": url, "UNIBUS_IDENTITY": str(seed)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from unibus.cli import main; sys.exit(main())",
        "tail",
        *args,
        "--json",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Tail(process)


@pytest.mark.timeout(300)
async def test_follow_and_tail_live_through_20_jwt_expiries(
    nats_server: NatsServer, start_plane: StartPlane, nc: Client, alice: Identity, bob: Identity, tmp_path
) -> None:
    """User JWTs of 3 s: bob's follower and his `unibus tail` are re-authorized 20 times
    while alice publishes 20 frames a second; both hand on every frame once, in order.
    (alice publishes on the suite's static connection, which has no JWT, so that every
    frame sent is stored and sent == stored is exact.)"""
    await start_plane(callout_ttl_s=3)
    publisher = Peer(nc, alice)
    follower = await Peer.connect(nats_server.url, bob)
    await publisher.create_room("expiring", encrypted=False)
    await publisher.add_member("expiring", bob.public_key)
    room = await publisher.room("expiring")
    tail = await start_tail(nats_server.url, bob, str(tmp_path), "expiring", "--after", "0")
    collecting = asyncio.create_task(tail.collect())
    sent = 0
    try:
        async with following(follower, "expiring", after=0) as got:
            while (
                follower.nc.stats["reconnects"] < EXPIRIES
                or sum(s.startswith("reconnected") for s in tail.stderr) < EXPIRIES
            ):
                assert got.ended is None, got.ended
                assert tail.process.returncode is None, tail.stderr
                await room.publish(f"frame {sent}".encode())
                sent += 1
                await asyncio.sleep(0.05)
            await nc.flush()
            await wait_stored(nc, "UNIBUS_expiring", sent)
            await got.until(lambda: len(got.seqs) >= sent, within_s=30)
            deadline = asyncio.get_running_loop().time() + 30
            while len(tail.seqs) < sent:
                assert asyncio.get_running_loop().time() < deadline, tail.stderr[-5:]
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        assert got.seqs == list(range(1, sent + 1))
        assert got.texts == [f"frame {i}" for i in range(sent)]
        assert tail.seqs == list(range(1, sent + 1))
    finally:
        tail.process.terminate()
        await tail.process.wait()
        collecting.cancel()
        await follower.nc.close()


async def test_an_innocent_member_loses_nothing_while_strangers_add_it_to_rooms(
    nats_server: NatsServer, plane: Running, alice: Identity, bob: Identity
) -> None:
    """Issue 19's first finding: anyone may add anyone to a room, and every add used to
    cost the member live frames. Strangers add bob to new rooms every 200 ms while alice
    publishes 100 frames a second into a room bob follows: he gets each frame sent, once.
    Alice publishes for 10 s and on until the churn has done what the test is about (25
    adds, 5 re-authorizations): on a loaded machine the adds come slower than planned."""
    owner = await Peer.connect(nats_server.url, alice)
    member = await Peer.connect(nats_server.url, bob)
    strangers = [await Peer.connect(nats_server.url, Identity.generate()) for _ in range(2)]
    await owner.create_room("busy", encrypted=False)
    await owner.add_member("busy", bob.public_key)
    room = await owner.room("busy")
    stop = asyncio.Event()
    adds = 0

    async def churn() -> None:
        nonlocal adds
        while not stop.is_set():
            stranger = strangers[adds % len(strangers)]
            await stranger.create_room(f"lure-{adds}", encrypted=False)
            await stranger.add_member(f"lure-{adds}", bob.public_key)
            adds += 1
            await asyncio.sleep(0.2)

    def churned() -> bool:
        return adds >= 25 and member.nc.stats["reconnects"] >= 5

    sent: list[str] = []
    try:
        async with following(member, "busy") as got:
            churning = asyncio.create_task(churn())
            deadline = asyncio.get_running_loop().time() + 60
            while len(sent) < 1000 or not churned():  # 10 s at 100 frames a second, or more
                assert asyncio.get_running_loop().time() < deadline, (adds, member.nc.stats["reconnects"])
                frame = await room.publish(f"frame {len(sent)}".encode())
                sent.append(frame.id)
                await asyncio.sleep(0.01)
            await owner.nc.flush()
            stop.set()
            await churning
            await got.until(lambda: len(got.seqs) >= len(sent), within_s=60)
            await asyncio.sleep(0.5)
        followed = [i.message for i in got.items if isinstance(i, Followed)]
        assert [m.id for m in followed if isinstance(m, Message)] == sent  # none lost, none twice
        assert got.seqs == list(range(1, len(sent) + 1))
    finally:
        for peer in (owner, member, *strangers):
            await peer.nc.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("lost", ["the follower's node", "the stream's leader"])
async def test_survives_the_loss_of_a_cluster_node(
    cluster: Cluster, spawn: Spawn, cluster_nc: Client, alice: Identity, bob: Identity, lost: str
) -> None:
    """A 3-node cluster, frames published at 100 a second; the node the follower is
    connected to is killed (SIGKILL). Losing the follower's own node, the stream goes on
    storing while the follower moves to another node; losing the stream's leader, the
    stream changes leader too. Either way the follower hands on every stored frame once,
    in order. (Frames published while a stream has no leader are not stored: a core
    publish is not acknowledged. What is stored is what must be followed.)"""
    spawn(2)
    await Peer(cluster_nc, alice).create_room("clustered", encrypted=False)
    await Peer(cluster_nc, alice).add_member("clustered", bob.public_key)
    js = cluster_nc.jetstream(timeout=2)
    info = await js.stream_info("UNIBUS_clustered")
    assert info.cluster is not None and info.cluster.leader and info.config.num_replicas == 3
    leader = cluster.node(info.cluster.leader)
    victim = leader if lost == "the stream's leader" else next(n for n in cluster.nodes if n is not leader)
    survivor = next(node for node in cluster.nodes if node is not victim)
    publisher = Peer(await connect(survivor.url, alice), alice)
    follower = await Peer.connect(",".join([victim.url, survivor.url]), bob, dont_randomize=True)
    room = await publisher.room("clustered")
    try:
        async with following(follower, "clustered", after=0) as got:
            killed_at = after_kill = 0
            for i in range(10_000):  # the node killed after 200 frames
                if i == 200:
                    killed_at = (await js.stream_info("UNIBUS_clustered")).state.last_seq
                    victim.kill()
                await room.publish(f"frame {i}".encode())
                await asyncio.sleep(0.01)
                if killed_at and i % 50 == 0:
                    with contextlib.suppress(Exception):  # no leader yet
                        after_kill = (await js.stream_info("UNIBUS_clustered")).state.last_seq - killed_at
                if after_kill >= 200:  # stored after the loss: a good many
                    break
            assert after_kill >= 200, "the stream never stored after the loss"
            stored = await stored_count(cluster_nc, "UNIBUS_clustered")
            await got.until(lambda: len(got.seqs) >= stored, within_s=60)
            await asyncio.sleep(1)
        assert got.seqs == list(range(1, stored + 1))
        assert follower.nc.connected_url is not None and follower.nc.connected_url.netloc in survivor.url
        assert not any(isinstance(i, Gap) for i in got.items)
    finally:
        await follower.nc.close()
        await publisher.nc.close()


async def test_a_live_copy_ahead_of_history_is_waited_out_not_taken_for_a_gap(
    nc: Client, alice_peer: Peer, bob_peer: Peer
) -> None:
    """History may answer behind a frame already seen live (a clustered stream's new
    leader, for a moment). The copy is sent here by the suite's own connection, stamped
    as nats-server stamps one, before its frame is stored: the follower waits for
    history instead of reporting the frames in between as gone, and hands each on once."""
    from unibus.wire.names import stored_subject

    await shared(alice_peer, bob_peer, "ahead", encrypted=False)
    await send(alice_peer, "ahead", ["a 0", "a 1"])
    async with following(bob_peer, "ahead", after=0) as got:
        await got.until(lambda: got.seqs == [1, 2])
        room = await bob_peer.room("ahead")
        early = seal_frame(alice_peer.identity, "ahead", b"the live copy, not its frame", ts_ms=1)
        await nc.publish(stored_subject(room.subject), early.encode(), headers={"Nats-Sequence": "5"})
        await got.until(lambda: any("behind sequence 5" in text for text in got.status))
        await asyncio.sleep(2.5)  # longer than the ten reads followers once gave history
        await send(alice_peer, "ahead", ["b 0", "b 1", "b 2"])
        await got.until(lambda: len(got.seqs) == 5)
        await asyncio.sleep(0.3)
    assert not any(isinstance(i, Gap) for i in got.items)
    assert got.seqs == [1, 2, 3, 4, 5]
    assert got.texts == ["a 0", "a 1", "b 0", "b 1", "b 2"]


async def test_a_stamp_history_never_reaches_is_dropped_and_following_goes_on(
    nc: Client, alice_peer: Peer, bob_peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stamp history never reaches is not the server's (a member can forge one that
    nats.go reads as the server's, docs/protocol.md): the copy is dropped after history
    was read again for `AHEAD_S`, said in a status, and the follower neither stops, nor
    skips to it, nor drops what is stored next."""
    from unibus.client import follow
    from unibus.wire.names import stored_subject

    monkeypatch.setattr(follow, "AHEAD_S", 1.0)
    await shared(alice_peer, bob_peer, "never", encrypted=False)
    await send(alice_peer, "never", ["only"])
    async with following(bob_peer, "never", after=0) as got:
        await got.until(lambda: got.seqs == [1])
        room = await bob_peer.room("never")
        await nc.publish(stored_subject(room.subject), b"x", headers={"Nats-Sequence": "1000"})
        await got.until(lambda: any("dropped a live copy stamped 1000" in text for text in got.status))
        await send(alice_peer, "never", ["next"])
        await got.until(lambda: got.seqs == [1, 2])
    assert got.ended is None
    assert got.texts == ["only", "next"] and not any(isinstance(i, Gap) for i in got.items)


async def test_a_busy_follower_holds_few_live_copies_and_loses_none(
    nc: Client, alice_peer: Peer, bob_peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that does not iterate while a room floods: live copies past the bound are
    dropped, said in a status, and read from history instead, each frame once in order."""
    from unibus.client import follow

    monkeypatch.setattr(follow, "LIVE_COPIES", 16)
    await shared(alice_peer, bob_peer, "flood", encrypted=False)
    await send(alice_peer, "flood", ["first"])
    status: list[str] = []
    items = bob_peer.follow("flood", 0, on_status=status.append)
    got = [await anext(items)]
    received = bob_peer.nc.stats["in_msgs"]
    await send(alice_peer, "flood", [f"flood {i}" for i in range(200)])  # nobody iterates
    await wait_stored(nc, "UNIBUS_flood", 201)

    async def copies_arrived() -> bool:  # while the caller is busy
        return bob_peer.nc.stats["in_msgs"] >= received + 200

    await wait_until(copies_arrived, "the 200 live copies reached the follower's connection")
    try:
        while len(got) < 201:
            got.append(await asyncio.wait_for(anext(items), 10))
    finally:
        await items.aclose()
    assert [i.seq for i in got if isinstance(i, Followed)] == list(range(1, 202))
    assert any("live copies dropped while busy" in text for text in status), status


async def test_a_granted_notice_re_authorizes_and_a_revoked_one_is_checked(
    nc: Client, alice_peer: Peer, bob_peer: Peer
) -> None:
    """The control plane's notices on an identity's inbox (sent here by the suite's own
    connection, as the service sends them): `granted` makes `connect`'s connection
    re-authorize, so the new room's permissions arrive; `revoked` makes a follower ask
    the control plane, and a member it still is goes on following."""
    import json

    from unibus.identity import notice_subject

    await shared(alice_peer, bob_peer, "noticed", encrypted=False)
    subject = notice_subject(bob_peer.identity.public_key)
    async with following(bob_peer, "noticed", after=0) as got:
        before = await settled(bob_peer.nc)
        await nc.publish(subject, json.dumps({"event": "granted", "room": "elsewhere"}).encode())
        for _ in range(500):
            if bob_peer.nc.stats["reconnects"] > before and bob_peer.nc.is_connected:
                break
            await asyncio.sleep(0.01)
        assert bob_peer.nc.stats["reconnects"] > before
        for junk in (b"not json", b"[]", b'{"event": "granted"}', b'{"event": 1, "room": "x"}'):
            await nc.publish(subject, junk)  # ignored, and nothing breaks
        await nc.publish(subject, json.dumps({"event": "revoked", "room": "noticed"}).encode())
        await send(alice_peer, "noticed", ["still a member"])
        await got.until(lambda: got.texts == ["still a member"])
    assert got.ended is None


async def settled(nc: Client, quiet_s: float = 1.5) -> int:
    """The connection's reconnect count once no cut has come for `quiet_s` (a membership
    change may cut it up to a second later, docs/security.md)."""
    count, since = nc.stats["reconnects"], asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - since < quiet_s or not nc.is_connected:
        await asyncio.sleep(0.05)
        if nc.stats["reconnects"] != count:
            count, since = nc.stats["reconnects"], asyncio.get_running_loop().time()
    return count


async def test_nobody_but_the_control_plane_sends_an_identity_notices(
    bounded_plane: Running, alice: Identity, bob: Identity
) -> None:
    """A notice costs a reconnect: a member who could send them could make another
    member reconnect at will. Peers may publish into no inbox, so they cannot."""
    from unibus.identity import notice_subject

    from harness.boundary import connect_as

    mallory = await connect_as(bounded_plane.nats_url, alice)
    try:
        await mallory.nc.publish(notice_subject(bob.public_key), b'{"event": "granted", "room": "x"}')
        assert await mallory.refused("publish", notice_subject(bob.public_key))
    finally:
        await mallory.nc.close()


@pytest.mark.timeout(180)
async def test_follows_on_after_its_jwt_expired_while_no_control_plane_answered(
    nats_server: NatsServer, nc: Client, alice: Identity, bob: Identity, tmp_path
) -> None:
    """The only instance stops for 8 s; meanwhile bob's 3 s JWT expires and each
    reconnect is refused (nobody answers the callout). nats-py keeps trying (nats.go and
    nats.js need `IgnoreAuthErrorAbort`, docs/protocol.md); when the control plane is
    back, the follower is admitted, catches up what was stored during the outage and
    goes on."""
    from unibus.config import AuthMode, Config
    from unibus.runner import running

    config = Config(
        nats_url=nats_server.url,
        data_dir=str(tmp_path / "data"),
        keys_dir=str(tmp_path / "keys"),
        auth_mode=AuthMode.ENFORCE,
        callout_ttl_s=3,
    )
    publisher = Peer(nc, alice)  # the suite's static connection: it needs no callout
    first = contextlib.AsyncExitStack()
    await first.enter_async_context(running(config))
    follower = await Peer.connect(nats_server.url, bob)
    try:
        await publisher.create_room("outage", encrypted=False)
        await publisher.add_member("outage", bob.public_key)
        room = await publisher.room("outage")
        async with following(follower, "outage", after=0) as got:
            await room.publish(b"before")
            await got.until(lambda: got.texts == ["before"])
            reconnects = follower.nc.stats["reconnects"]
            await first.aclose()  # the outage
            for i in range(5):
                await room.publish(f"during {i}".encode())
                await asyncio.sleep(1.6)
            assert not follower.nc.is_connected  # its JWT expired and nobody admits it
            async with running(config):
                await got.until(lambda: len(got.texts) == 6, within_s=60)
                await room.publish(b"after")
                await got.until(lambda: len(got.texts) == 7, within_s=30)
        assert got.texts == ["before", *(f"during {i}" for i in range(5)), "after"]
        assert got.seqs == list(range(1, 8))
        assert follower.nc.stats["reconnects"] > reconnects
    finally:
        await first.aclose()
        await follower.nc.close()


async def test_a_burst_of_grants_costs_one_reconnect_a_second(nc: Client, bob_peer: Peer) -> None:
    """Anyone may add anyone: ten grants in a moment are taken up by two reconnects (one
    at once, one for the rest a second later), not ten."""
    import json

    from unibus.identity import notice_subject

    before = await settled(bob_peer.nc)
    for i in range(10):
        await nc.publish(
            notice_subject(bob_peer.identity.public_key),
            json.dumps({"event": "granted", "room": f"r{i}"}).encode(),
        )
        await asyncio.sleep(0.02)
    await nc.flush()
    await asyncio.sleep(2.5)
    assert bob_peer.nc.stats["reconnects"] - before == 2
