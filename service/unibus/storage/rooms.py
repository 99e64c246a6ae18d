"""The room row: what the control plane knows about a room, and its JSON form at rest.

The same encoding is used in the JetStream KV bucket and the SQLite fallback, so a row
can move between them and any instance can read what another wrote.

Every row carries `schema`, the version of its encoding; a row without it was written
before versions existed and is version 1. During a rolling upgrade instances of two
versions share one bucket, so the rule for mixed versions (docs/operations.md) is:
- a newer version may only add fields, never change what an existing field means, so an
  older instance reading a newer row still understands every field it knows and serves
  reads (membership, `info`, `history`, the callout's grants) from it;
- an older instance never writes or deletes a row of a newer version: re-encoding it
  would drop the fields it does not know. It answers 503 (`RowTooNew`), so the caller's
  retry can land on an upgraded instance.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from ..errors import DomainError
from ..wire.names import stream_name

log = logging.getLogger(__name__)

Mode = Literal["matrix", "ephemeral"]
Role = Literal["owner", "member"]
MODES: tuple[str, ...] = ("matrix", "ephemeral")

SCHEMA_VERSION = 1
"""The row encoding this version writes (and the newest it may rewrite)."""


class RowTooNew(DomainError):
    """A write to a row that a newer version of the service wrote (503: an instance of that
    version will do it)."""

    def __init__(self, room_id: str, schema: int) -> None:
        super().__init__(
            f"room {room_id} was written by a newer version of the service (row schema {schema},"
            f" this instance knows {SCHEMA_VERSION}); try again",
        )


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
    schema: int = SCHEMA_VERSION
    """The encoding version the row was stored with (1 when it carries none)."""
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

    def check_writable(self) -> None:
        """Raise RowTooNew unless this version may rewrite or delete the row."""
        if self.schema > SCHEMA_VERSION:
            log.warning(
                "room %s: row schema %d is newer than this instance's %d; write refused (upgrade it)",
                self.id,
                self.schema,
                SCHEMA_VERSION,
            )
            raise RowTooNew(self.id, self.schema)

    def to_json(self) -> bytes:
        self.check_writable()
        row = asdict(self)
        row.pop("revision")
        row["schema"] = SCHEMA_VERSION
        return json.dumps(row, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, revision: int = 0) -> Room:
        row: dict[str, Any] = json.loads(data)
        # Fields a newer version added are ignored, so instances can be upgraded one by one.
        known = {k: v for k, v in row.items() if k in _FIELDS and k != "revision"}
        known.setdefault("schema", 1)  # written before rows carried a version
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
