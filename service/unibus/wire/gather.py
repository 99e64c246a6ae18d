"""One request, every reply: `$SRV.PING` to each instance of a service, `$SYS.REQ.SERVER.PING`
to each server of a cluster. NATS's own request takes the first reply only, so a helper
collects the rest, and this is the one.

How long to listen is the caller's knowledge: how many repliers it expects (the servers it
counted last time, or just "at least one"), and how long a pause means the rest are not
coming.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from .interest import confirm_interest


class Answer(NamedTuple):
    msg: Msg
    after_s: float
    """Seconds from the request to this reply (a round trip, for `unibus service ls`)."""


async def gather(
    nc: Client, subject: str, body: bytes = b"", *, within_s: float, idle_s: float, expect: int | None = None
) -> list[Answer]:
    """Every reply that arrives within `within_s`; once `expect` replies are in (if given),
    listening stops as soon as `idle_s` passes without another. A "no responders" status
    ends it at once: nobody is subscribed."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    answers: list[Answer] = []
    try:
        await confirm_interest(nc)  # a reply must not beat the subscription to the server
        sent = time.monotonic()
        await nc.publish(subject, body, reply=inbox)
        deadline = sent + within_s
        while (left := deadline - time.monotonic()) > 0:
            enough = expect is not None and len(answers) >= expect
            try:
                msg = await sub.next_msg(timeout=min(left, idle_s) if enough else left)
            except nats.errors.TimeoutError:
                break
            if not msg.data and (msg.headers or {}).get("Status") == "503":
                break
            answers.append(Answer(msg, time.monotonic() - sent))
    finally:
        await sub.unsubscribe()
    return answers
