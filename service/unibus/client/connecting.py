"""`connect(url, identity)`: a NATS connection a peer can live on for days.

What it sets, and why a peer on a plain NATS client needs the same (docs/protocol.md,
"Staying connected"): the identity's nkey and inbox prefix (the boundary admits nothing
else), reconnects without end and after a short wait (every membership change, JWT
expiry and NATS restart is a reconnect, and frames published while away are not
delivered live), re-authentication when the user JWT expires (`RenewingClient`: nats-py
would close the connection for good), a reconnect when a room is granted (the notice on
its inbox), and an error callback that stays quiet about all of that routine.
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client

from ..identity import Identity
from ..wire import connection
from .notices import reauthorize_on_grant

RECONNECT_WAIT_S = 0.1
"""Between reconnect attempts: short, since a cut is routine and brief here."""


async def connect(url: str, identity: Identity, *, name: str = "unibus-peer", **options: Any) -> Client:
    """Connected as `identity` (the first attempt failing raises at once); `options` are
    nats-py's `connect` keywords, for what a caller wants otherwise (`creds`,
    `connect_timeout`, callbacks)."""
    options.setdefault("reconnect_time_wait", RECONNECT_WAIT_S)
    nc = await connection.connect_once(connection.options(url, name=name, identity=identity, **options))
    await reauthorize_on_grant(nc, identity.public_key)
    return nc
