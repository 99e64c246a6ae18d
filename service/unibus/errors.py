"""The one error type a handler raises to answer with an ADR-32 service error, and the
one the service raises when it cannot start at all.

Codes follow HTTP so the HTTP shim can map them 1:1 and so Go, Python and browser
peers share one vocabulary: 400, 401, 403, 404, 409, 413, 429, 500, 503, 507.
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.message!r})"


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def not_found(message: str = "room not found") -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def too_many(message: str) -> ApiError:
    return ApiError(429, message)


def unavailable(message: str) -> ApiError:
    return ApiError(503, message)


def insufficient_storage(message: str) -> ApiError:
    """507: the JetStream store has no room left to reserve; nothing was created."""
    return ApiError(507, message)


class StartRefused(RuntimeError):
    """The service cannot start on this NATS as it stands; the message says why (told as
    one line by `unibus serve`)."""
