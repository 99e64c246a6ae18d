"""Where room rows live: a JetStream KV bucket, or SQLite when there is no JetStream."""

from .base import RoomExists, RoomStore
from .kv import KvStore
from .rooms import Room
from .sqlite import SqliteStore

__all__ = ["KvStore", "Room", "RoomExists", "RoomStore", "SqliteStore"]
