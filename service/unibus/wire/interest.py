"""Knowing the server has our subscriptions before anyone is told we are listening."""

from __future__ import annotations

from nats.aio.client import Client


async def confirm_interest(nc: Client) -> None:
    """Return only once the server has every subscription this connection made so far.

    nats-py writes flush()'s PING straight to the socket, ahead of commands still queued for
    its flusher task, so the PONG can come back before queued SUBs are even sent. Anything
    announced as ready then (a service, a live subscription) misses its first messages or
    lets requests meet "no responders". Draining the queue first puts the PING behind it."""
    await nc._flush_pending(force_flush=True)
    await nc.flush()
