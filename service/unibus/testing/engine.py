"""Is a Docker engine reachable? Asked before choosing the container backend, so a suite
on a machine without one runs the process backend or skips with the reason instead of
failing."""

from __future__ import annotations


def docker_unavailable_reason() -> str | None:
    """None when testcontainers is installed and a Docker engine answers a ping."""
    try:
        from testcontainers.core.docker_client import DockerClient
    except ImportError:
        return "testcontainers is not installed (pip install 'unibus-control-plane[testing]')"
    try:
        DockerClient().client.ping()
    except Exception as exc:  # docker-py raises DockerException, requests and OS errors alike
        return f"no Docker engine reachable: {exc}"
    return None
