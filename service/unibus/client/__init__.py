"""The Python peer library: a connection that stays up (`connect`), identity, signed
control requests, history paging, following a room, and end-to-end encrypted frames."""

from ..identity import Identity
from .connecting import connect
from .control import ControlClient, FramePage
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientStorage,
    NotFound,
    ReplyLost,
    ServiceError,
    TooLarge,
    TooMany,
    Unauthorized,
    Unavailable,
)
from .follow import Followed, FollowError, Gap
from .frames import Frame, FrameRejected, Reason
from .peer import HistoryPage, Message, Opened, Peer, Rejected, RoomView
from .roomkeys import SealedKeyError

__all__ = [
    "BadRequest",
    "Conflict",
    "ControlClient",
    "FollowError",
    "Followed",
    "Forbidden",
    "Frame",
    "FramePage",
    "FrameRejected",
    "Gap",
    "HistoryPage",
    "Identity",
    "InsufficientStorage",
    "Message",
    "NotFound",
    "Opened",
    "Peer",
    "Reason",
    "Rejected",
    "ReplyLost",
    "RoomView",
    "SealedKeyError",
    "ServiceError",
    "TooLarge",
    "TooMany",
    "Unauthorized",
    "Unavailable",
    "connect",
]
