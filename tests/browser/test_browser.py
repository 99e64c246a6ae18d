"""The central promise in a real browser: frames a core-NATS-only page publishes survive a reload.

Debian's Chromium, driven by Playwright for Python (its own browser download is not used).
The page is served from another origin than the shim's, publishes over nats-server's
websocket with the official NATS JavaScript client, then after a reload signs a history
request itself (nkeys from npm, WebCrypto SHA-256) and fetches it through the shim.
In CI a missing piece fails the test; elsewhere it skips and says what to install.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from unibus.client import ControlClient, Identity
from unibus.config import Config
from unibus.runner import Running, running

from harness import browser
from harness.boundary import connect_as

pytestmark = pytest.mark.browser

FRAMES = ["frame one", "frame two ☃", "frame three"]


@pytest.fixture
async def origins(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """The same page on two origins: the first is allowed by the shim, the second is not."""
    async with browser.served(browser.site(tmp_path / "site", "page"), origins=2) as (allowed, other):
        yield allowed, other


@pytest.fixture
async def service(tmp_path: Path, origins: tuple[str, str]) -> AsyncIterator[Running]:
    """`unibus serve --http` with its embedded defaults: JetStream, websocket, enforce."""
    config = Config(
        data_dir=str(tmp_path / "data"),
        embedded_port=0,
        websocket_port=0,
        http_listen="127.0.0.1:0",
        cors_origins=origins[0],
    )
    async with running(config) as run:
        assert run.websocket_url is not None, "the embedded server must offer a websocket"
        yield run


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    async with browser.chromium() as launched:
        yield launched


async def stored(client: ControlClient, room: str, count: int) -> None:
    """Bounded wait until JetStream holds what the page published (capture is asynchronous)."""
    for _ in range(200):
        if len((await client.history(room)).frames) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{room} never held {count} frames")


async def test_frames_published_from_a_browser_survive_a_reload(
    service: Running, origins: tuple[str, str], chromium: Any
) -> None:
    owner = Identity.generate()
    as_owner = await connect_as(service.nats_url, owner)
    client = ControlClient(as_owner.nc, owner)
    room = await client.create_room("browser", mode="matrix")
    settings = {
        "ws": service.websocket_url,
        "shim": service.http_url,
        "room": room["id"],
        "subject": room["subject"],
        "seed": owner.seed,
    }
    fragment = urlencode(settings)
    allowed, other = origins
    page = await chromium.new_page()
    await page.goto(f"{allowed}/page.html#{fragment}")
    await page.wait_for_selector("body[data-state=ready]", timeout=30_000)
    assert await page.text_content("#history-status") == "200"
    assert await page.locator("#frames li").all_text_contents() == []

    # 1. Publish three frames over the websocket, core NATS only.
    for number, text in enumerate(FRAMES, start=1):
        await page.fill("#text", text)
        await page.click("#send")
        await page.wait_for_function(f"document.getElementById('sent').textContent === '{number}'")
    await stored(client, room["id"], len(FRAMES))

    # 2-4. Reload: the page signs its history request and reads it through the shim.
    await page.reload()
    await page.wait_for_selector("body[data-state=ready]", timeout=30_000)
    assert await page.text_content("#history-status") == "200"
    assert await page.locator("#frames li").all_text_contents() == FRAMES

    # Unsigned, under enforce: the service's 401 comes through, readable cross-origin.
    unsigned = await page.evaluate("window.unibus.fetchHistory({ signed: false })")
    assert unsigned["status"] == 401
    assert "error" in unsigned["body"]

    # The same page on an origin the shim does not list gets no CORS grant.
    stranger = await chromium.new_page()
    await stranger.goto(f"{other}/page.html#{fragment}")
    await stranger.wait_for_selector("body[data-state=ready]", timeout=30_000)
    assert "Failed to fetch" in (await stranger.text_content("#history-status") or "")
    assert await stranger.locator("#frames li").all_text_contents() == []
    refused = await stranger.evaluate("window.unibus.fetchHistory()")
    assert "status" not in refused
    assert "Failed to fetch" in refused["error"]

    # A page whose identity is not a member connects, but the server refuses its publish.
    outsider = await chromium.new_page()
    await outsider.goto(f"{allowed}/page.html#{urlencode({**settings, 'seed': Identity.generate().seed})}")
    await outsider.wait_for_selector("body[data-state=ready]", timeout=30_000)
    await outsider.fill("#text", "forged")
    await outsider.click("#send")
    await outsider.wait_for_selector("#refusals li", timeout=10_000)
    assert "permissions violation for publish" in (await outsider.text_content("#refusals li") or "").lower()
    await asyncio.sleep(0.3)
    assert len((await client.history(room["id"])).frames) == len(FRAMES)
    await as_owner.nc.close()
