"""The room row: what the control plane knows about a room, and its JSON form at rest.

The same encoding is used in the JetStream KV bucket and the SQLite fallback, so a row
can move between them and any instance can read what another wrote.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

Mode = Literal["matrix", "ephemeral"]
Role = Literal["owner", "member"]
MODES: tuple[str, ...] = ("matrix", "ephemeral")


@dataclass(frozen=True)
class Room:
    id: str
    mode: Mode
    subject: str
    owner: str | None
    members: dict[str, Role]
    encrypted: bool = False
    key_epoch: int = 0
    sealed_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    """member → {epoch: base64 sealed room key}. Opaque: the service never opens them."""
    name: str = ""
    created_at_ms: int = 0
    revision: int = 0
    """Storage revision the row was read at; compare-and-set updates depend on it."""

    @property
    def persisted(self) -> bool:
        return self.mode == "matrix"

    @property
    def stream(self) -> str:
        return stream_name(self.id)

    def is_member(self, key: str | None) -> bool:
        return key is not None and key in self.members

    def is_owner(self, key: str | None) -> bool:
        return key is not None and self.members.get(key) == "owner"

    def to_json(self) -> bytes:
        row = asdict(self)
        row.pop("revision")
        return json.dumps(row, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, revision: int = 0) -> Room:
        row: dict[str, Any] = json.loads(data)
        # Fields a newer version added are ignored, so instances can be upgraded one by one.
        known = {k: v for k, v in row.items() if k in _FIELDS and k != "revision"}
        return cls(**known, revision=revision)

    def public(self) -> dict[str, Any]:
        """What `info` shows a member: everything but other members' sealed keys."""
        return {
            "id": self.id,
            "name": self.name,
            "mode": self.mode,
            "subject": self.subject,
            "stream": self.stream if self.persisted else None,
            "owner": self.owner,
            "encrypted": self.encrypted,
            "key_epoch": self.key_epoch,
            "members": len(self.members),
            "created_at_ms": self.created_at_ms,
        }

    def with_revision(self, revision: int) -> Room:
        return replace(self, revision=revision)


_FIELDS = frozenset(f.name for f in fields(Room))


def stream_name(room_id: str) -> str:
    """`UNIBUS_<roomID>`: the same derivation as the Go client, which may ensure it too."""
    return f"UNIBUS_{room_id}"
