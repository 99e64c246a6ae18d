"""The two kinds of error a request can end in, and the one the service raises when it
cannot start at all.

A handler raises `ApiError` with a status code: it is the API layer, and knows the answer.
Lower layers (storage, auth, streams) do not speak HTTP: they raise a `DomainError` that
names the condition where it happens (`StoreUnavailable`, `AuthFailed`, …), and `app.py`
holds the one table from those to status codes, as Starlette's middleware turns an
`AuthenticationError` into a response. A condition nobody named is a 500.

Codes follow HTTP so the HTTP shim can map them 1:1 and so Go, Python and browser
peers share one vocabulary: 400, 401, 403, 404, 409, 413, 429, 500, 503, 507.
"""

from __future__ import annotations


class DomainError(Exception):
    """A condition a lower layer names; its message is what the caller is told, so it
    must say what happened without internals (app.py maps the class to a status)."""


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
