"""Room ids and nonces: the only user input that ends up inside subjects and stream names.

A room id becomes part of `<prefix>.rooms.<id>.…`, `unibus.room.<id>` and `UNIBUS_<id>`,
so anything beyond `[A-Za-z0-9_-]` (`.`, `*`, `>`, whitespace) could address other
rooms or wildcard subscriptions. It is checked before any NATS or JetStream call.
"""

from __future__ import annotations

import re
import secrets

ROOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
ROOM_ID_RULE = "1-64 characters of [A-Za-z0-9_-]"
"""What `ROOM_ID` accepts, in the words every refusal of a bad room id uses."""


def is_room_id(value: object) -> bool:
    return isinstance(value, str) and ROOM_ID.fullmatch(value) is not None


def new_room_id() -> str:
    """128 random bits in the room-id alphabet (22 url-safe characters)."""
    return secrets.token_urlsafe(16)


def new_nonce() -> str:
    return secrets.token_urlsafe(16)
