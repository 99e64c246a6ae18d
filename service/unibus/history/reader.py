"""A window's frames, read from the room stream through a short-lived consumer: every
page the frame cache cannot serve from what it holds (cache.py), and every forward page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg

from ..errors import unavailable
from ..wire import jsapi
from .query import Window
from .reply import HistoryReply, PageBudget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowRead:
    """The newest frames of a window that fit a page (a forward read: the oldest), each
    with its sequence."""

    frames: list[tuple[int, bytes]]
    window: Window
    """The window narrowed to what was kept: it starts at the oldest frame kept when
    frames were cut for the budget (a forward read: it ends at the newest kept)."""
    cut: tuple[int, bytes] | None = None
    """The newest frame cut for the budget, if any: with it, the cache knows that a page
    of this window ends where this one did (cache.py). A forward read: the first
    frame past the budget, which only says that the page was cut."""
    last_ts: int = 0
    """When the window's last frame was stored (ns since the epoch), 0 if it was not read:
    the cache checks it against the stream state's `last_ts`, so fetched frames are known
    to come from the stream the state described, not from one made since."""

    @property
    def page(self) -> HistoryReply:
        return HistoryReply([frame for _, frame in self.frames], self.window, [seq for seq, _ in self.frames])


async def read_window(
    nc: Client,
    stream: str,
    win: Window,
    timeout_s: float,
    budget: PageBudget,
    *,
    forward: bool = False,
    whole: bool = False,
) -> WindowRead:
    """Stream the frames of `win` from a short-lived push consumer, in one flow, keeping
    the newest that fit `budget` (with `forward`, the oldest: a page of `after`, which
    then stops reading at the first frame that does not fit).

    `whole` says every sequence of the window was stored when its state was read
    (`StreamState.stores_every_from`). Limits only drop the oldest, so the stream's last
    message still exists unless it was deleted or the stream purged since: a consumer that
    says nothing is pending before the window's end is behind the state (in a cluster, a
    consumer placed on a replica that lags), and the read fails with a 503 to be retried
    rather than answer a page that would say those frames are gone. (Were it a delete or
    a purge after all, the retry's state says so, and its page then says what is gone.)

    Creating the consumer starts the delivery, so the whole read is one round trip. The
    consumer is ephemeral, in memory and single-replica, and it is never acknowledged:
    `max_ack_pending` equal to the window size makes the server stop after the window,
    so a page deep in a long stream costs no more than the page. Flow control paces the
    delivery to what this connection reads, so no window, however large its frames, can
    make the service a slow consumer; frames beyond the budget are dropped as they come,
    so memory stays within one page. It touches no peer's consumer or ack floor, and is
    deleted as soon as the window is read (the server reaps it after
    `inactive_threshold` should this process die mid-read)."""
    inbox = nc.new_inbox()
    kept: deque[tuple[int, bytes]] = deque()
    held = last_ts = 0
    cut: tuple[int, bytes] | None = None
    ended_early: int | None = None
    """The sequence below the window's end after which the consumer said none was pending
    (the window's start less one: none at all)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        nonlocal held, cut, last_ts, ended_early
        if done.done() or not msg.reply:
            return
        if not msg.reply.startswith("$JS.ACK."):  # flow control: answering lets more come
            await nc.publish(msg.reply, b"")
            return
        seq, stored_ns, pending = _position(msg.reply)
        if seq == win.last_seq:
            last_ts = stored_ns
        if forward and seq <= win.last_seq and kept and held + budget.cost(msg.data) > budget.max_bytes:
            cut = (seq, msg.data)
            done.set_result(None)
            return
        if seq <= win.last_seq:
            kept.append((seq, msg.data))
            held += budget.cost(msg.data)
            while held > budget.max_bytes and len(kept) > 1:
                cut = kept.popleft()
                held -= budget.cost(cut[1])
        if seq >= win.last_seq or pending == 0:
            if seq < win.last_seq:
                ended_early = seq
            done.set_result(None)

    sub = await nc.subscribe(inbox, cb=on_message)
    name = None
    try:
        name, pending = await _create_consumer(nc, stream, inbox, win, timeout_s)
        if pending:
            await asyncio.wait_for(done, timeout_s)
        else:  # nothing stored at or after the window's start (all gaps)
            ended_early = win.first_seq - 1
    finally:
        await sub.unsubscribe()
        if name is not None:
            # Best effort, not awaited: inactive_threshold is the backstop.
            with contextlib.suppress(Exception):
                await nc.publish(f"{jsapi.API_PREFIX}.CONSUMER.DELETE.{stream}.{name}", b"")
    if whole and ended_early is not None:
        log.warning(
            "%s: read ended at %d, before %d, which its state stored: retry",
            stream,
            ended_early,
            win.last_seq,
        )
        raise unavailable("the room's stream was read behind its own state, try again")
    if cut is not None:
        win = Window(win.first_seq, kept[-1][0]) if forward else Window(kept[0][0], win.last_seq)
    return WindowRead(list(kept), win, cut, last_ts)


async def _create_consumer(
    nc: Client, stream: str, inbox: str, win: Window, timeout_s: float
) -> tuple[str, int]:
    request = {
        "stream_name": stream,
        "config": {
            "deliver_subject": inbox,
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": win.first_seq,
            "ack_policy": "explicit",
            "max_ack_pending": win.size,
            "ack_wait": 30_000_000_000,
            "max_deliver": 1,
            "replay_policy": "instant",
            "mem_storage": True,
            "num_replicas": 1,
            "flow_control": True,
            "idle_heartbeat": 5_000_000_000,
            "inactive_threshold": 10_000_000_000,
        },
    }
    answer = await jsapi.request(nc, f"CONSUMER.CREATE.{stream}", request, timeout_s)
    return str(answer["name"]), int(answer.get("num_pending", 1))


def _position(reply: str) -> tuple[int, int, int]:
    """(stream sequence, when stored in ns, messages pending after it) from a `$JS.ACK`
    reply subject (v1: 9 tokens; v2 adds domain and account hash in front and a token at
    the end)."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[7]), int(tokens[8])
    return int(tokens[7]), int(tokens[9]), int(tokens[10])
