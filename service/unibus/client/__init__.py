"""The Python peer library: identity, signed control requests, history paging, and
end-to-end encrypted frames."""

from ..identity import Identity
from .control import ControlClient, Page
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientStorage,
    NotFound,
    ServiceError,
    TooLarge,
    TooMany,
    Unauthorized,
    Unavailable,
)
from .frames import Frame, FrameRejected, Reason
from .peer import HistoryPage, Message, Opened, Peer, Rejected, Room
from .roomkeys import SealedKeyError

__all__ = [
    "BadRequest",
    "Conflict",
    "ControlClient",
    "Forbidden",
    "Frame",
    "FrameRejected",
    "HistoryPage",
    "Identity",
    "InsufficientStorage",
    "Message",
    "NotFound",
    "Opened",
    "Page",
    "Peer",
    "Reason",
    "Rejected",
    "Room",
    "SealedKeyError",
    "ServiceError",
    "TooLarge",
    "TooMany",
    "Unauthorized",
    "Unavailable",
]
