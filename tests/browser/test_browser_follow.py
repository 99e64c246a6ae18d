"""clients/js/unibus.js in Debian's Chromium: `connect` keeps a page's connection
authorized and `follow` delivers every stored frame of a room once, in order, through the
continuity scenario of harness.continuity (cuts, JWT expiries every 3 s, a NATS restart,
a reload resuming from the page's cursor), as the Go example peer's follower does."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from harness import browser, continuity

pytestmark = pytest.mark.browser


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[str]:
    async with browser.served(browser.site(tmp_path / "site", "follow")) as (origin,):
        yield origin


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    async with browser.chromium() as launched:
        yield launched


class PageFollower:
    """follow.html following the stage's room as its reader."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.url = url
        self.reconnected_before = 0
        """Reconnects of the pages before the last reload."""

    @classmethod
    async def open(cls, chromium: Any, origin: str, stage: continuity.Stage, **extra: int) -> PageFollower:
        settings = {
            "ws": stage.server.spec.websocket_url,
            "seed": stage.reader.seed,
            "room": stage.room,
            "after": 0,
            **extra,
        }
        follower = cls(await chromium.new_page(), f"{origin}/follow.html#{urlencode(settings)}")
        await follower.page.goto(follower.url)
        await follower.following()
        return follower

    async def following(self) -> None:
        await self.page.wait_for_selector("body[data-state=following]", state="attached", timeout=30_000)

    async def restart(self) -> None:
        """A reload: a new page, from the cursor the last one kept."""
        self.reconnected_before = await self.reconnects()
        await self.page.reload()
        await self.following()

    async def reconnects(self) -> int:
        return self.reconnected_before + int((await self.state())["reconnects"])

    async def log(self) -> list[dict[str, Any]]:
        return list(json.loads(await self.page.evaluate("localStorage.getItem('log') ?? '[]'")))

    async def frames(self) -> list[tuple[int, bytes]]:
        return [(item["seq"], base64.b64decode(item["frame"])) for item in await self.log() if "seq" in item]

    async def state(self) -> dict[str, Any]:
        return dict(await self.page.evaluate("window.follower"))


@pytest.mark.timeout(240)  # the scenario alone publishes for 16 s; the suite's 2 cores are shared
async def test_a_browser_follower_gets_every_frame_once_across_cuts_expiries_and_reloads(
    tmp_path: Path, origin: str, chromium: Any
) -> None:
    async with continuity.stage(tmp_path) as stage:
        follower = await PageFollower.open(chromium, origin, stage)
        sent = await continuity.run(stage, follower)
        stored = await stage.stored(len(sent))
        assert [frame for _, frame in stored] == sent

        async def caught_up() -> bool:
            return len(await follower.frames()) >= len(stored)

        await continuity.wait_for(caught_up, 60, f"the page delivered {len(stored)} frames")
        assert await follower.frames() == stored  # each once, in stream order, with its sequence
        assert [item for item in await follower.log() if "gap" in item] == []
        state = await follower.state()
        assert state["error"] is None
        # It lived through cuts, a NATS restart and expired JWTs (a 3 s TTL), not one connection.
        assert await follower.reconnects() >= 6, state

        # Removed from the room, the follower ends with the control plane's 403.
        await stage.owner.remove_member(stage.room, stage.reader.public_key)
        await follower.page.wait_for_selector("body[data-state=ended]", state="attached", timeout=20_000)
        assert (await follower.state())["error"]["code"] == 403


async def test_a_browser_follower_reports_the_frames_retention_removed(
    tmp_path: Path, origin: str, chromium: Any
) -> None:
    async with continuity.stage(tmp_path) as stage:
        sent = await continuity.publish(stage, 6, 0)
        await stage.purge_before(4, len(sent))  # frames 1-3 are gone
        follower = await PageFollower.open(chromium, origin, stage)

        async def caught_up() -> bool:
            return len(await follower.frames()) >= 3

        await continuity.wait_for(caught_up, 30, "the page delivered frames 4-6")
        assert (await follower.log())[0] == {"gap": {"first": 1, "last": 3}}
        assert await follower.frames() == list(zip([4, 5, 6], sent[3:], strict=True))


async def test_a_browser_follower_waits_for_history_behind_a_live_copy(
    tmp_path: Path, origin: str, chromium: Any
) -> None:
    async with continuity.stage(tmp_path, jwt_ttl_s=900) as stage:
        follower = await PageFollower.open(chromium, origin, stage)

        async def delivered() -> int:
            return len(await follower.log())

        stored = await continuity.ahead_of_history(stage, delivered)
        assert await follower.log() == [
            {"seq": seq, "frame": base64.b64encode(frame).decode()} for seq, frame in stored
        ]
        assert (await follower.state())["error"] is None


async def test_a_busy_browser_follower_holds_few_live_copies_and_loses_none(
    tmp_path: Path, origin: str, chromium: Any
) -> None:
    """The page is busy after its first item while the room floods: copies past
    `liveCopies` are dropped, said through `onStatus`, and read from history instead."""
    async with continuity.stage(tmp_path, jwt_ttl_s=900) as stage:
        follower = await PageFollower.open(chromium, origin, stage, liveCopies=8, busyMs=4000)
        await continuity.publish(stage, 1, interval_s=0)

        async def first() -> bool:
            return len(await follower.log()) >= 1

        async def every() -> bool:
            return len(await follower.log()) >= 151

        await continuity.wait_for(first, 30, "the first frame")
        await continuity.publish(stage, 150, interval_s=0, first=2)  # while the page is busy
        await continuity.wait_for(every, 60, "every frame")
        stored = await stage.stored(151)
        assert await follower.log() == [
            {"seq": seq, "frame": base64.b64encode(frame).decode()} for seq, frame in stored
        ]
        state = await follower.state()
        assert state["error"] is None
        assert any("live copies dropped while busy" in text for text in state["statuses"]), state["statuses"]


async def test_a_browser_follower_outlives_a_control_plane_outage(
    tmp_path: Path, origin: str, chromium: Any
) -> None:
    """While no control plane answers the auth callout, every reconnect is refused with
    "Authorization Violation". nats.js gives up for good after two auth errors in a row
    unless told otherwise; a page must be back once the control plane is."""
    async with continuity.stage(tmp_path, jwt_ttl_s=900) as stage:
        follower = await PageFollower.open(chromium, origin, stage)
        await stage.stop_plane()
        await stage.kick()
        sent = await continuity.publish(stage, 3, 0)
        await asyncio.sleep(6)  # several refused reconnects (each waits out the callout)
        await stage.start_plane()

        async def delivered() -> bool:
            return [frame for _, frame in await follower.frames()] == sent

        await continuity.wait_for(delivered, 30, "the page delivered what was sent meanwhile")
        assert (await follower.state())["error"] is None


async def test_a_browser_follower_takes_up_a_granted_room_and_checks_a_revoked_notice(
    tmp_path: Path, origin: str, chromium: Any
) -> None:
    async with continuity.stage(tmp_path, jwt_ttl_s=900) as stage:
        follower = await PageFollower.open(chromium, origin, stage)
        sent = await continuity.publish(stage, 1, 0)

        async def delivered() -> bool:
            return [frame for _, frame in await follower.frames()] == sent

        await continuity.wait_for(delivered, 20, "the page delivered the first frame")
        assert (await follower.state())["reconnects"] == 0

        # Added to another room, which cuts nobody: the control plane's notice makes it
        # re-authorize by itself, once, and its connection then holds the new room.
        assert await continuity.granted_another_room(stage, follower) == 1

        # "revoked" for a room it is still in (forged): it asks, and goes on.
        await stage.notify("revoked", stage.room)
        sent += await continuity.publish(stage, 1, 0, first=2)
        await continuity.wait_for(delivered, 20, "the page delivered the second frame")
        state = await follower.state()
        assert state["error"] is None
        assert state["notices"] == [
            {"event": "granted", "room": continuity.ANOTHER_ROOM},
            {"event": "revoked", "room": stage.room},
        ]


async def test_a_page_that_creates_a_room_can_publish_to_it_at_once(
    tmp_path: Path, origin: str, chromium: Any
) -> None:
    """`create` cuts nobody: its reply says the signer must re-authorize, and the module's
    request comes back only once it has, so a publish right after it is not refused."""
    async with continuity.stage(tmp_path, jwt_ttl_s=900) as stage:
        follower = await PageFollower.open(chromium, origin, stage)
        created = await follower.page.evaluate(
            """async () => {
                const body = JSON.stringify({ id: "made-in-page", mode: "matrix" });
                const room = (await window.session.request("create", body)).json();
                window.session.nc.publish(room.subject, new TextEncoder().encode("first words"));
                await window.session.nc.flush();
                return room;
            }"""
        )
        js = stage.inspector.jetstream()

        async def stored() -> bool:
            return bool((await js.stream_info(created["stream"])).state.messages == 1)

        await continuity.wait_for(stored, 10, "the page's first frame in its new room is stored")
        assert (await follower.state())["error"] is None
