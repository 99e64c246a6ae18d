"""A running unibus stack for integration suites: NATS with JetStream plus the service.

Two backends behind one interface (`Backend.start() -> Stack`, `Backend.stop()`):
`ContainerBackend` runs the image built from deploy/Dockerfile (or one named by the
caller) with testcontainers; `ProcessBackend` runs nats-server from the wheel and the
service as a subprocess, for machines without a Docker engine. The pytest fixtures in
`unibus.testing.fixtures` pick one (docs/testing.md).
"""

from .choose import BACKEND_ENV, IMAGE_ENV, backend_from_env
from .engine import docker_unavailable_reason
from .process import ProcessBackend
from .stack import Backend, BackendUnavailable, Stack, started

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
