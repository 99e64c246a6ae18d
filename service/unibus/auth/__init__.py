"""Request authentication: checking signed headers (the scheme itself is `wire/signing.py`),
replay protection, and the caller they yield."""

from .replay import LocalNonces, ReplayGuard
from .verifier import ANONYMOUS, Caller, Nonce, Verifier

__all__ = [
    "ANONYMOUS",
    "Caller",
    "LocalNonces",
    "Nonce",
    "ReplayGuard",
    "Verifier",
]
