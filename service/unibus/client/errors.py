"""Typed errors for service replies, one class per code, so callers can `except NotFound`."""

from __future__ import annotations

import re
from datetime import datetime

_RESUMES = re.compile(r"replay protection resumes after a restore: requests signed before (\S+) are refused")


class ServiceError(Exception):
    code = 0

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class BadRequest(ServiceError):
    pass


class Unauthorized(ServiceError):
    pass


class Forbidden(ServiceError):
    pass


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    pass


class TooLarge(ServiceError):
    pass


class TooMany(ServiceError):
    """429: a rate was exceeded; the same request later will do."""


class Unavailable(ServiceError):
    """503: nothing was changed; the same request, signed again, may pass later."""

    @property
    def resumes_at(self) -> float | None:
        """The epoch seconds a restore's replay refusal names (docs/operations.md), which
        can be minutes away; None for every other 503."""
        found = _RESUMES.search(self.message)
        if found is None:
            return None
        try:
            return datetime.fromisoformat(found.group(1)).timestamp()
        except ValueError:
            return None


class InsufficientStorage(ServiceError):
    """507: the store cannot reserve space for a new room until rooms are deleted or the
    store grows."""


class ReplyLost(ServiceError):
    """A change whose reply was lost to a cut of the connection: it may or may not have
    been applied. Not sent again on its own (a second `create` or `members.add` is a 409,
    a second `key.rotate` a second rotation): read the room, then decide. 504, as the
    HTTP shim answers a request it got no reply to."""

    def __init__(self, subject: str) -> None:
        super().__init__(
            504,
            f"the connection was cut while {subject} was in flight and its reply was lost:"
            " it may or may not have been applied (read the room before trying again)",
        )


_BY_CODE: dict[int, type[ServiceError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    429: TooMany,
    503: Unavailable,
    507: InsufficientStorage,
}


def error_for(code: int, message: str) -> ServiceError:
    return _BY_CODE.get(code, ServiceError)(code, message)
