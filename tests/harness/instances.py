"""Service instances as real `unibus serve` subprocesses, so SIGKILL is a real crash.

An instance is ready when it prints its "ready" line, which `serve_forever` writes only
after every endpoint is subscribed; its log stays in the test's directory for post-mortems.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from unibus.processes import kill_process, stop_process

READY = "unibus control plane ready"


def unibus_binary() -> str:
    return str(Path(sys.executable).parent / "unibus")


class ServiceInstance:
    def __init__(self, name: str, nats_url: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.nats_url = nats_url
        self.workdir = workdir
        self.env = {**os.environ, "UNIBUS_DATA_DIR": str(workdir / "data"), **(env or {})}
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, nats_url: str | None = None, wait_s: float = 30.0) -> ServiceInstance:
        """Start (again); `nats_url` moves the instance to another node's seed URL."""
        self.nats_url = nats_url or self.nats_url
        self.workdir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [unibus_binary(), "serve", "--nats-url", self.nats_url],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: see {self.log_path}")
            if READY in self.log_path.read_bytes()[offset:].decode(errors="replace"):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready within {wait_s}s: see {self.log_path}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM: the service drains its NATS connection, then exits."""
        stop_process(self.process, timeout_s)

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye; in-flight requests die with the process."""
        kill_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


Spawn = Callable[..., list[ServiceInstance]]
"""The fixtures' factory: `spawn(count, env=None)` starts more instances."""
