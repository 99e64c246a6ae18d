"""The local-process backend: nats-server from the wheel and the service as a subprocess.

It is what runs where no Docker engine is: the same `unibus serve` the image runs, on a
real JetStream server with the trust boundary on (keys made for the stack), only without
the container around it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..callout import serverconf
from ..callout.keys import BoundaryKeys
from ..config import Config
from ..natsserver import NatsServer, ServerSpec, free_port
from ..processes import stop_process
from .stack import Stack, shim_available, wait_service, wait_shim

# The CLI as this very interpreter sees it: no dependence on which `unibus` script is on PATH.
_UNIBUS = [sys.executable, "-c", "import sys; from unibus.cli import main; sys.exit(main())"]


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    log_path: Path

    def death(self) -> str | None:
        """None while it runs; its exit code and log tail once it has died."""
        code = self.process.poll()
        if code is None:
            return None
        tail = self.log_path.read_text(errors="replace")[-4000:]
        return f"exit code {code}, log {self.log_path}:\n{tail}"

    def terminate(self, timeout_s: float = 10.0) -> None:
        """SIGTERM lets the service drain its connection; SIGKILL only if it hangs."""
        stop_process(self.process, timeout_s)


class ProcessBackend:
    """Start with `start()`, stop with `stop()`; everything lives under one work directory.

    `env` holds UNIBUS_* settings for the service and shim (e.g. UNIBUS_AUTH_MODE=dev);
    the caller's own UNIBUS_* variables are not inherited, so a stack is what it was asked
    to be. `shim=None` starts the shim when this unibus has one.
    """

    name = "process"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        workdir: Path | None = None,
        shim: bool | None = None,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.env = dict(env or {})
        self.shim = shim_available() if shim is None else shim
        self.ready_timeout_s = ready_timeout_s
        self._workdir = workdir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: NatsServer | None = None
        self._dir: Path | None = None
        self._children: list[_Child] = []

    def start(self) -> Stack:
        root = self._dir = self._root()
        keys_dir = root / "keys"
        keys = BoundaryKeys.ensure(keys_dir)
        spec = ServerSpec(store_dir=root / "nats", websocket_port=0, server_name="unibus-test")
        spec.extra = serverconf.render(keys.public(), Config.from_env(self.env).api_prefix)
        self._server = NatsServer(spec).start()
        url = self._server.url
        data = str(root / "data")
        service = self._spawn(
            "service", ["serve", "--nats-url", url, "--data-dir", data, "--keys-dir", str(keys_dir)]
        )
        wait_service("unibus serve", url, self.env, service.death, self.ready_timeout_s)
        shim_url = None
        if self.shim:
            listen = f"127.0.0.1:{free_port()}"
            shim_key = str(keys_dir / "shim.nk")
            shim = self._spawn("shim", ["shim", "--nats-url", url, "--listen", listen, "--nkey", shim_key])
            shim_url = f"http://{listen}"
            wait_shim("unibus shim", shim_url, shim.death, self.ready_timeout_s)
        return Stack(self.name, url, self._server.spec.websocket_url, shim_url)

    def stop(self) -> None:
        """Children first (SIGTERM lets the service drain), then the server, then files."""
        for child in reversed(self._children):
            child.terminate()
        self._children.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _root(self) -> Path:
        if self._workdir is not None:
            self._workdir.mkdir(parents=True, exist_ok=True)
            return self._workdir
        self._tmp = tempfile.TemporaryDirectory(prefix="unibus-stack-")
        return Path(self._tmp.name)

    def _spawn(self, label: str, args: list[str]) -> _Child:
        assert self._dir is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNIBUS_")} | self.env
        log_path = self._dir / f"{label}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*_UNIBUS, *args], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        child = _Child(process, log_path)
        self._children.append(child)
        return child
