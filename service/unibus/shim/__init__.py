"""The HTTP shim: a stateless, keyless relay from plain HTTP to the control plane's NATS requests.

A browser that speaks only core NATS (no JetStream, often no request path) fetches a
room's backlog here after a reload. The shim forwards the caller's signature headers and
the raw query string untouched, so it can neither forge nor alter a request: the service
verifies the signature over the NATS subject and these exact bytes.
"""

from .app import Shim, build_app, serving
from .settings import ShimSettings

__all__ = ["Shim", "ShimSettings", "build_app", "serving"]
