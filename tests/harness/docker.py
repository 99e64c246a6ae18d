"""Docker for the container tests: skipped without an engine, except where CI demands it.

`make test-containers` sets UNIBUS_REQUIRE_DOCKER=1 after starting an engine
(deploy/local-engine.sh), so there a missing engine or image fails the run instead of
quietly skipping the tests it exists for.
"""

from __future__ import annotations

import os
import subprocess
from typing import NoReturn

import pytest

from unibus.testing import docker_unavailable_reason

REQUIRE_ENV = "UNIBUS_REQUIRE_DOCKER"


def unavailable(reason: str) -> NoReturn:
    """Skip for `reason`, or fail where Docker is required."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set, but {reason}")
    pytest.skip(reason)


def require_docker() -> None:
    reason = docker_unavailable_reason()
    if reason is not None:
        unavailable(f"container tests need Docker: {reason}")


def require_image(image: str) -> None:
    require_docker()
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    if found.returncode != 0:
        unavailable(f"image {image} is not built (make test-containers builds it)")
