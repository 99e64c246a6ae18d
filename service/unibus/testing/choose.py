"""Which backend a suite runs against, decided by two environment variables.

UNIBUS_TEST_BACKEND: `auto` (default: the container when a Docker engine is reachable and
an image can be had, else local processes), `container` or `process`.
UNIBUS_TEST_IMAGE: the image to run; unset builds deploy/Dockerfile from this checkout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .process import ProcessBackend
from .stack import Backend, BackendUnavailable

BACKEND_ENV = "UNIBUS_TEST_BACKEND"
IMAGE_ENV = "UNIBUS_TEST_IMAGE"
KINDS = ("auto", "container", "process")


def backend_from_env(
    env: Mapping[str, str] | None = None, service_env: Mapping[str, str] | None = None
) -> Backend:
    """The backend to use; raises BackendUnavailable when `container` was asked for and
    cannot run, ValueError for an unknown kind. `service_env` configures the service."""
    env = os.environ if env is None else env
    kind = env.get(BACKEND_ENV) or "auto"
    if kind not in KINDS:
        raise ValueError(f"{BACKEND_ENV}={kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "process":
        return ProcessBackend(service_env)
    # Imported only now: the process backend needs neither testcontainers nor Docker.
    from .engine import docker_unavailable_reason

    reason = docker_unavailable_reason()
    if reason is None:
        from .container import ContainerBackend

        container = ContainerBackend(env.get(IMAGE_ENV) or None, service_env)
        reason = container.image_unavailable_reason()
        if reason is None:
            return container
    if kind == "container":
        raise BackendUnavailable(reason)
    return ProcessBackend(service_env)
