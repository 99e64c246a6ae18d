"""Request authentication: signed headers, replay protection, and the caller they yield."""

from .replay import LocalNonces, ReplayGuard
from .signing import sign_request, signing_input
from .verifier import ANONYMOUS, Caller, Nonce, Verifier

__all__ = [
    "ANONYMOUS",
    "Caller",
    "LocalNonces",
    "Nonce",
    "ReplayGuard",
    "Verifier",
    "sign_request",
    "signing_input",
]
