"""Where room rows live: a JetStream KV bucket, or SQLite when there is no JetStream."""

from .base import ConcurrentChange, RoomExists, RoomStore, StoreUnavailable
from .kv import KvStore
from .rooms import Room
from .sqlite import SqliteStore

__all__ = [
    "ConcurrentChange",
    "KvStore",
    "Room",
    "RoomExists",
    "RoomStore",
    "SqliteStore",
    "StoreUnavailable",
]
