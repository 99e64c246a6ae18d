"""The auth callout on a connection of its own, answered like every endpoint.

Poisoning (issue 20): nats-server takes whatever arrives first on a pending callout's
reply subject as the authorization answer. When the user answering control requests (to
reply subjects callers choose) could also publish there, a stranger who named a pending
callout's reply subject got the service's JSON error taken as the answer, and the victim
was refused. Now only the callout's own user may publish callout answers, and it answers
nothing a caller addresses.

Concurrency (issue 21): connects are answered in parallel, bounded, through the same
dispatcher as every endpoint, and counted in `$SRV.STATS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from urllib.parse import urlparse

import nats.errors
from nats.aio.client import Client

from unibus.callout.backlog import WORKERS
from unibus.client import ControlClient, Identity
from unibus.config import AuthMode
from unibus.natsserver import NatsServer
from unibus.runner import Running
from unibus.wire.interest import confirm_interest
from unibus.wire.names import ROOM_BUCKET

from harness.boundary import connect_as
from harness.plane import StartPlane
from harness.relay import relay_to
from harness.waiting import wait_until

SERVICE = "unibus-control-plane"
CONNECTS = 12
"""Fewer than the callout's workers, so every one of them is being answered at once."""


async def callout_stats(nc: Client) -> dict[str, object]:
    stats = json.loads((await nc.request(f"$SRV.STATS.{SERVICE}", b"", timeout=5)).data)
    return next(e for e in stats["endpoints"] if e["name"] == "auth-callout")


async def test_a_control_reply_cannot_reach_a_callout_reply_subject(
    nc: Client, plane: Running, alice: Identity
) -> None:
    """A stranger names a callout reply subject (`$SYS._INBOX.…`, as nats-server makes
    them) as the reply to control requests: nothing the service answers arrives there."""
    spy = await nc.subscribe("$SYS._INBOX.poison.>")
    await confirm_interest(nc)
    stranger = await connect_as(plane.nats_url, alice)
    try:
        for _ in range(5):
            await stranger.nc.publish("$UNIBUS.CTL.rooms.list", b"", reply="$SYS._INBOX.poison.victim")
            await stranger.nc.publish(f"$SRV.PING.{SERVICE}", b"", reply="$SYS._INBOX.poison.victim")
        await stranger.nc.flush()
        # The same requests with a reply the stranger owns are answered: they did arrive.
        answer = await stranger.nc.request("$UNIBUS.CTL.rooms.list", b"", timeout=5)
        assert b"signature" in answer.data
        with_poison = [m async for m in _drain(spy, within_s=1.0)]
        assert with_poison == []
    finally:
        await stranger.nc.close()


async def _drain(sub: nats.aio.subscription.Subscription, within_s: float):  # type: ignore[no-untyped-def]
    while True:
        try:
            yield await sub.next_msg(timeout=within_s)
        except nats.errors.TimeoutError:
            return


async def test_a_stranger_flooding_callout_replies_does_not_refuse_a_victim(
    nc: Client, plane: Running, alice: Identity, bob: Identity
) -> None:
    """The attack as it ran: the stranger learns each pending callout's reply subject (here
    from a test-only listener, in the field from an open monitoring port) and fires control
    requests at it while the victim connects. Every connect of the victim is admitted."""
    stranger = await connect_as(plane.nats_url, alice)
    fired = 0

    async def poison(msg: nats.aio.msg.Msg) -> None:
        nonlocal fired
        for _ in range(3):
            await stranger.nc.publish("$UNIBUS.CTL.rooms.list", b"", reply=msg.reply)
            fired += 1

    listener = await nc.subscribe("$SYS.REQ.USER.AUTH", cb=poison)
    await confirm_interest(nc)
    try:
        for _ in range(30):
            victim = await connect_as(plane.nats_url, bob)
            assert await ControlClient(victim.nc, bob).list_rooms() == []
            await victim.nc.close()
        assert fired >= 30 * 3
    finally:
        await listener.unsubscribe()
        await stranger.nc.close()


async def test_connects_are_answered_while_one_callout_waits(
    tmp_path: Path, nats_server: NatsServer, nc: Client, start_plane: StartPlane, alice: Identity
) -> None:
    """One member's connect waits on the room bucket (the service's JetStream link held
    back, as over a congested network, for longer than any connect may wait); meanwhile
    other connects are answered, and every callout shows in `$SRV.STATS`."""
    async with relay_to(urlparse(nats_server.url).port or 0) as relay:
        await start_plane(
            nats_url=relay.url,
            keys_dir=str(tmp_path / "keys"),
            auth_mode=AuthMode.DEV,
            js_timeout_s=30.0,
        )
        before = int((await callout_stats(nc))["num_requests"])  # type: ignore[call-overload]
        relay.hold(f"{SERVICE}-service")
        waiting = asyncio.create_task(connect_as(nats_server.url, alice))

        async def arrived() -> bool:
            return int((await callout_stats(nc))["num_requests"]) > before  # type: ignore[call-overload]

        await wait_until(arrived, "the member's callout arrived", within_s=20.0)
        # Each of these has nats-server's connect deadline (seconds); one at a time, they
        # would all wait behind the held callout (30 s).
        others = await asyncio.gather(*(connect_as(nats_server.url, None) for _ in range(8)))
        assert all(o.nc.is_connected for o in others)
        assert not waiting.done() or waiting.exception() is not None
        stats = await callout_stats(nc)
        assert int(stats["num_requests"]) >= before + 9  # type: ignore[call-overload]
        for other in others:
            await other.nc.close()
        relay.release(f"{SERVICE}-service")
        with_result = await asyncio.gather(waiting, return_exceptions=True)
        if not isinstance(with_result[0], BaseException):
            await with_result[0].nc.close()


async def test_concurrent_connects_share_one_freshness_check(
    tmp_path: Path, nats_server: NatsServer, nc: Client, start_plane: StartPlane
) -> None:
    """Every grant comes from a room copy checked fresh by a STREAM.INFO of the bucket
    sent after the connect arrived; connects that arrive while one is in flight share the
    next one (readindex.py) instead of sending one each."""
    async with relay_to(urlparse(nats_server.url).port or 0) as relay:
        await start_plane(nats_url=relay.url, keys_dir=str(tmp_path / "keys"))
        infos = await nc.subscribe(f"$JS.API.STREAM.INFO.KV_{ROOM_BUCKET}")
        await confirm_interest(nc)
        before = int((await callout_stats(nc))["num_requests"])  # type: ignore[call-overload]
        # The first check stays in flight (its answer held back) until every connect has
        # arrived, so all of them overlap, as in a reconnect storm.
        relay.hold(f"{SERVICE}-service")
        connecting = asyncio.gather(
            *(connect_as(nats_server.url, Identity.generate()) for _ in range(CONNECTS))
        )

        async def arrived() -> bool:
            return int((await callout_stats(nc))["num_requests"]) >= before + CONNECTS  # type: ignore[call-overload]

        try:
            await wait_until(arrived, "every connect's callout arrived", within_s=1.5)
        finally:
            relay.release(f"{SERVICE}-service")
        connected = await connecting
        assert all(c.nc.is_connected for c in connected)
        checks = 0
        with contextlib.suppress(nats.errors.TimeoutError):
            while True:
                await infos.next_msg(timeout=0.5)
                checks += 1
        # One per connect without the sharing; the held one and one more with it.
        assert 1 <= checks <= CONNECTS // 2, checks
        for c in connected:
            await c.nc.close()


async def test_connects_that_waited_past_their_use_are_dropped_and_the_next_is_answered(
    tmp_path: Path, nats_server: NatsServer, nc: Client, start_plane: StartPlane
) -> None:
    """More connects than the callout's workers, while the room bucket does not answer:
    nats-server gives up on them (its authorization timeout), so the requests still queued
    after that are dropped unanswered and counted, instead of each being worked on long
    after its client was told no; and the instance answers the next connect at once."""
    async with relay_to(urlparse(nats_server.url).port or 0) as relay:
        await start_plane(nats_url=relay.url, keys_dir=str(tmp_path / "keys"))
        before = await callout_stats(nc)
        relay.hold(f"{SERVICE}-service")
        storm = [
            asyncio.create_task(connect_as(nats_server.url, Identity.generate())) for _ in range(WORKERS * 2)
        ]

        async def arrived() -> bool:
            stats = await callout_stats(nc)
            return int(stats["num_requests"]) >= int(before["num_requests"]) + len(storm)  # type: ignore[call-overload]

        await wait_until(arrived, "the storm's callouts arrived", within_s=20.0)
        await asyncio.gather(*storm, return_exceptions=True)  # nats-server timed them all out
        relay.release(f"{SERVICE}-service")

        async def dropped() -> bool:
            stats = await callout_stats(nc)
            return int(stats["num_errors"]) >= int(before["num_errors"]) + WORKERS  # type: ignore[call-overload]

        await wait_until(dropped, "the queued callouts dropped", within_s=20.0)
        assert "waited too long" in str((await callout_stats(nc))["last_error"])
        late = await connect_as(nats_server.url, Identity.generate())
        assert late.nc.is_connected
        await late.nc.close()
