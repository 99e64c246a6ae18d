"""What every endpoint handler receives, and the small helpers they share."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from ..auth import Caller
from ..config import Config
from ..errors import bad_request, forbidden, not_found
from ..history import Backlog
from ..notices import Notice
from ..storage import Room, RoomStore
from ..streams import StreamPolicy
from .creations import CreationLimit
from .quotas import Underway

Reply = tuple[bytes, dict[str, str]]
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Deps:
    """The service's long-lived parts, shared by every request."""

    config: Config
    store: RoomStore
    nc: Client
    js: JetStreamContext | None
    streams: StreamPolicy
    creations: CreationLimit
    backlog: Backlog
    """Rooms' history: the frame cache and the room streams' state behind one entry."""
    underway: Underway = field(default_factory=Underway)
    """Creates in progress on this instance, which the quotas count (quotas.py)."""


@dataclass(frozen=True)
class Call:
    deps: Deps
    caller: Caller
    subject: str
    headers: dict[str, str]
    body: bytes
    room_id: str | None
    notices: list[Notice] = field(default_factory=list)
    """Identities that gained or lost a room in this call: told on their inbox once the
    reply is sent (notices.py); a lost room is enforced by the revoker, not by this."""

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body is an empty object."""
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body)
        except (UnicodeDecodeError, ValueError):
            raise bad_request("body must be a JSON object") from None
        if not isinstance(value, dict):
            raise bad_request("body must be a JSON object")
        return value

    async def room(self) -> Room:
        """The room as stored now: the store's copy is brought up to date first (one round
        trip), so no decision comes from a copy whose watch a NATS restart cut off."""
        assert self.room_id is not None
        await self.deps.store.catch_up()
        room = await self.deps.store.get(self.room_id)
        if room is None:
            raise not_found()
        return room

    async def member_room(self) -> Room:
        """The room, if the caller may read it: 404 first, then 403 (the documented order)."""
        room = await self.room()
        if not self.caller.anonymous and not room.is_member(self.caller.signer):
            raise forbidden("not a member of this room")
        return room

    async def owned_room(self) -> Room:
        room = await self.room()
        if not self.caller.anonymous and not room.is_owner(self.caller.signer):
            raise forbidden("only the room owner may do this")
        return room


CallHandler = Callable[[Call], Awaitable[Reply]]
"""What answers one endpoint's calls (endpoints/__init__.py's table)."""


def ok(payload: dict[str, Any]) -> Reply:
    return json.dumps(payload, separators=(",", ":")).encode(), JSON_HEADERS


def sealed_blob(value: object, what: str) -> str:
    """A sealed room key: opaque to the service, but it must at least be base64."""
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise bad_request(f"{what} must be a base64 string")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{what} must be a base64 string") from None
    return value
