"""Real-browser tests: Debian's Chromium driven by Playwright for Python (its own browser
download is never used), and pages bundled with esbuild from tests/browser's npm packages.
In CI a missing piece fails the test; elsewhere it skips and says what to install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

PAGES = Path(__file__).resolve().parents[1] / "browser"
NODE_MODULES = PAGES / "node_modules"
ESBUILD = NODE_MODULES / ".bin" / "esbuild"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def require(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser test: see `make browser-deps`)")
    pytest.skip(reason)


def site(out: Path, *pages: str) -> Path:
    """`out` holding each page's `<name>.html` and the esbuild bundle of its `<name>.js`.
    Bare imports resolve from tests/browser/node_modules wherever the importing module
    lives (clients/js/unibus.js has none of its own): esbuild reads NODE_PATH."""
    require(ESBUILD.exists(), "npm packages missing: run `make browser-deps`")
    for page in pages:
        subprocess.run(
            [
                str(ESBUILD),
                str(PAGES / f"{page}.js"),
                "--bundle",
                "--format=esm",
                f"--outfile={out}/dist/{page}.js",
            ],
            check=True,
            capture_output=True,
            timeout=60,
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        )
        shutil.copy(PAGES / f"{page}.html", out / f"{page}.html")
    return out


@contextlib.asynccontextmanager
async def served(directory: Path, origins: int = 1) -> AsyncIterator[list[str]]:
    """`directory` over HTTP on `origins` loopback ports: one origin each."""
    app = web.Application()
    app.router.add_static("/", directory)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for _ in range(origins):
        await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield [f"http://127.0.0.1:{address[1]}" for address in runner.addresses]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Debian's chromium, launched by Playwright."""
    executable = shutil.which("chromium")
    require(executable is not None, "Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install -e '.[dev]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
