"""A running unibus stack for integration suites: NATS with JetStream plus the service.

Two backends behind one interface (`Backend.start() -> Stack`, `Backend.stop()`):
`ContainerBackend` runs the image built from deploy/Dockerfile (or one named by the
caller) with testcontainers; `ProcessBackend` runs nats-server from the wheel and the
service as a subprocess, for machines without a Docker engine. The pytest fixtures in
`unibus.testing.fixtures` pick one (docs/testing.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .choose import BACKEND_ENV, IMAGE_ENV, backend_from_env
    from .engine import docker_unavailable_reason
    from .process import ProcessBackend
    from .stack import Backend, BackendUnavailable, Stack, started

_HOME = {
    "BACKEND_ENV": "choose",
    "IMAGE_ENV": "choose",
    "backend_from_env": "choose",
    "docker_unavailable_reason": "engine",
    "ProcessBackend": "process",
    "Backend": "stack",
    "BackendUnavailable": "stack",
    "Stack": "stack",
    "started": "stack",
}


def __getattr__(name: str) -> object:
    """Each name loads its module when first used. The pytest plugin (`fixtures`) lives in
    this package and every pytest run where unibus is installed loads it: that must load
    none of the service (which would also be imported before coverage.py starts, and go
    unmeasured)."""
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKEND_ENV",
    "IMAGE_ENV",
    "Backend",
    "BackendUnavailable",
    "ProcessBackend",
    "Stack",
    "backend_from_env",
    "docker_unavailable_reason",
    "started",
]
