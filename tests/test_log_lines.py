"""Log lines cannot be forged or flooded by clients: what a client chose is escaped in the
text format, and refusals anyone can cause are logged rate-limited with counts."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator

import nats.errors
import pytest

from unibus.client import ControlClient, Identity
from unibus.logformat import TextFormatter
from unibus.logthrottle import Throttle
from unibus.runner import Running
from unibus.wire import connection
from unibus.wire.names import CONTROL_PREFIX

from harness.boundary import connect_as
from harness.waiting import wait_until

FORGED = "2026-12-06 12:00:00,000 INFO unibus.app: serving as root, checks off"
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    """What the `unibus` loggers write in the text format, from INFO up."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("unibus")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_newline_in_a_message_argument_stays_in_its_line(text_log: io.StringIO) -> None:
    log = logging.getLogger("unibus.test")
    log.info("connection %s refused", f"x\n{FORGED}\x1b[2J\u202e")
    try:
        raise ValueError(f"bad\n{FORGED}")
    except ValueError:
        log.exception("failed on %s", "y")
    lines = text_log.getvalue().splitlines()
    assert [line for line in lines if line.startswith(FORGED)] == []
    assert "x\\n2026" in lines[0] and "\\x1b[2J\\u202e" in lines[0]
    # A traceback's lines are indented: none can pass for a record of its own.
    assert all(RECORD_START.match(line) or line.startswith("    ") for line in lines), lines


def test_a_throttle_logs_one_line_per_interval_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = Throttle(logging.getLogger("unibus.test"), every_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="unibus.test"):
        logged = [throttle.log(logging.INFO, "refused", "refused %s", i) for i in range(1000)]
        now[0] = 10.0
        throttle.log(logging.INFO, "refused", "refused %s", "late")
        throttle.log(logging.INFO, "other", "other kind")
    assert logged.count(True) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0",
        "refused late (and 999 more like it since the last such line)",
        "other kind",
    ]


async def refused(url: str, name: str) -> None:
    opts = connection.options(url, name=name)
    with pytest.raises(nats.errors.Error):
        await (await connection.connect_once(opts)).close()


async def test_refused_connects_cannot_forge_or_flood_the_log(
    bounded_plane: Running, text_log: io.StringIO
) -> None:
    """The shipped config, enforce mode: connects without an nkey are refused. The first
    names itself with a forged log line; 200 more follow at once."""
    await refused(bounded_plane.nats_url, f"victim\n{FORGED}")
    await asyncio.gather(*(refused(bounded_plane.nats_url, f"flood-{i}") for i in range(200)))
    lines = text_log.getvalue().splitlines()
    assert [line for line in lines if line.startswith(FORGED)] == []
    refusals = [line for line in lines if "auth callout: refused" in line]
    assert len(refusals) == 1 and "victim\\n2026" in refusals[0], refusals


async def test_replies_aimed_where_the_service_may_not_publish_write_one_line(
    bounded_plane: Running, text_log: io.StringIO, alice: Identity
) -> None:
    """Each control request whose reply subject the responder may not publish to earns it
    a permissions violation from the server, naming that subject: 100 of them, each aimed
    elsewhere, are one kind of error and one line."""
    stranger = await connect_as(bounded_plane.nats_url, alice)
    try:
        for i in range(100):
            await stranger.nc.publish(
                f"{CONTROL_PREFIX}.rooms.list", b"", reply=f"$JS.API.STREAM.DELETE.x{i}"
            )
        await stranger.nc.flush()
        # The service still answers, and has had every violation reported by now.
        assert await ControlClient(stranger.nc, alice).list_rooms() == []
        await wait_until(
            lambda: "permissions violation" in text_log.getvalue(), "a violation was logged", within_s=10.0
        )
        await asyncio.sleep(0.5)
    finally:
        await stranger.nc.close()
    violations = [line for line in text_log.getvalue().splitlines() if "permissions violation" in line]
    assert len(violations) == 1, violations
