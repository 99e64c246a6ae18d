"""The Python peer library: identity, signed control requests, history paging, and
end-to-end encrypted frames."""

from ..identity import Identity
from .control import ControlClient, FramePage
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
from .peer import HistoryPage, Message, Opened, Peer, Rejected, RoomView
from .roomkeys import SealedKeyError

__all__ = [
    "BadRequest",
    "Conflict",
    "ControlClient",
    "Forbidden",
    "Frame",
    "FramePage",
    "FrameRejected",
    "HistoryPage",
    "Identity",
    "InsufficientStorage",
    "Message",
    "NotFound",
    "Opened",
    "Peer",
    "Reason",
    "Rejected",
    "RoomView",
    "SealedKeyError",
    "ServiceError",
    "TooLarge",
    "TooMany",
    "Unauthorized",
    "Unavailable",
]
