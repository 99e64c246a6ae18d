"""A reusable cluster harness: three nats-server processes as one JetStream cluster, and
control-plane instances as real subprocesses, each of which can be stopped, restarted and
killed. Test modules load the fixtures with `pytest_plugins = ["harness.fixtures"]`."""

from .cluster import Cluster, Node, connect_all
from .instances import ServiceInstance, Spawn
from .load import LoadResult, steady
from .retry import DEFAULT, NO_RETRY, Outcome, RetryPolicy, create_room, with_retries

__all__ = [
    "DEFAULT",
    "NO_RETRY",
    "Cluster",
    "LoadResult",
    "Node",
    "Outcome",
    "RetryPolicy",
    "ServiceInstance",
    "Spawn",
    "connect_all",
    "create_room",
    "steady",
    "with_retries",
]
