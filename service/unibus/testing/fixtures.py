"""pytest fixtures for suites that talk to a running unibus stack.

Loaded automatically where unibus is installed (the `pytest11` entry point `unibus`); in
a project that disables plugin autoload, add `pytest_plugins = ["unibus.testing.fixtures"]`
to its conftest.py. The fixtures do nothing until a test asks for them.

`unibus_stack` is session-scoped: one NATS and one service for the whole run, as
starting them costs seconds. Tests share it, so give rooms unique ids. Choose the backend
with UNIBUS_TEST_BACKEND (see `unibus.testing.choose`); a suite that asked for
`container` on a machine without Docker is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .stack import Stack


@pytest.fixture(scope="session")
def unibus_service_env() -> dict[str, str]:
    """UNIBUS_* settings for the service of `unibus_stack`; override this fixture in a
    conftest.py to change them (e.g. {"UNIBUS_AUTH_MODE": "dev"})."""
    return {}


@pytest.fixture(scope="session")
def unibus_stack(unibus_service_env: dict[str, str]) -> Iterator[Stack]:
    """NATS with JetStream and the control plane on it; `.nats_url` is where to connect."""
    # Imported here, not at the top: every pytest run where unibus is installed loads this
    # plugin, and should load none of the service (nor start coverage late) for it.
    from .choose import backend_from_env
    from .stack import BackendUnavailable, started

    try:
        backend = backend_from_env(service_env=unibus_service_env)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    with started(backend) as stack:
        yield stack
