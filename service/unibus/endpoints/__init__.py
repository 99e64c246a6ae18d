"""The control endpoints: one row per subject, so `$SRV.INFO` lists exactly this table.

`*` in a subject is the room id; it is validated before any handler runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import history, members, rooms
from .context import Call, CallHandler, Deps, Reply


@dataclass(frozen=True)
class Endpoint:
    name: str
    suffix: str
    handler: CallHandler
    read_only: bool = False
    """Changes nothing (history's lazy stream ensure is idempotent), so its replay check
    may run beside it."""

    @property
    def per_room(self) -> bool:
        return self.suffix.startswith("*")


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("create", "create", rooms.create),
    Endpoint("list", "list", rooms.list_rooms, read_only=True),
    Endpoint("info", "*.info", rooms.info, read_only=True),
    Endpoint("history", "*.history", history.read, read_only=True),
    Endpoint("members", "*.members", members.list_members, read_only=True),
    Endpoint("members-add", "*.members.add", members.add),
    Endpoint("members-remove", "*.members.remove", members.remove),
    Endpoint("key", "*.key", members.sealed_keys, read_only=True),
    Endpoint("key-rotate", "*.key.rotate", members.rotate),
    Endpoint("delete", "*.delete", rooms.delete),
)

__all__ = ["ENDPOINTS", "Call", "Deps", "Endpoint", "Reply"]
