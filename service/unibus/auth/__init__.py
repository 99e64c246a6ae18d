"""Request authentication: checking signed headers (the scheme itself is `wire/signing.py`),
replay protection, and the caller they yield."""

from .replay import LocalNonces, ReplayCheckUnavailable, ReplayGuard
from .verifier import ANONYMOUS, AuthFailed, Caller, Nonce, Verifier

__all__ = [
    "ANONYMOUS",
    "AuthFailed",
    "Caller",
    "LocalNonces",
    "Nonce",
    "ReplayCheckUnavailable",
    "ReplayGuard",
    "Verifier",
]
