"""The Python peer library: identity, signed control requests, history paging."""

from ..identity import Identity
from .control import ControlClient, Page
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ServiceError,
    TooLarge,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "BadRequest",
    "Conflict",
    "ControlClient",
    "Forbidden",
    "Identity",
    "NotFound",
    "Page",
    "ServiceError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
]
