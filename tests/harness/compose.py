"""deploy/compose.yaml brought up as shipped, as its own compose project, on loopback
ports the test picks; and what is left of the project on the engine afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unibus.natsserver import free_port

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
PORT_VARIABLES = ("UNIBUS_NATS_PORT", "UNIBUS_WEBSOCKET_PORT", "UNIBUS_SHIM_PORT")


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) where the CLI has it, else `docker-compose` (Debian's
    v1); None when neither is installed."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@dataclass
class ComposeProject:
    name: str
    command: list[str]
    ports: dict[str, int] = field(default_factory=lambda: {v: free_port() for v in PORT_VARIABLES})

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.ports['UNIBUS_NATS_PORT']}"

    @property
    def websocket_url(self) -> str:
        return f"ws://127.0.0.1:{self.ports['UNIBUS_WEBSOCKET_PORT']}"

    @property
    def shim_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['UNIBUS_SHIM_PORT']}"

    def compose(self, *args: str, timeout_s: float = 300.0) -> str:
        env = {**os.environ, **{k: str(v) for k, v in self.ports.items()}}
        argv = [*self.command, "-p", self.name, "-f", str(COMPOSE_FILE), *args]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def containers(self) -> list[dict[str, Any]]:
        """`docker inspect` of every container of the project, running or not."""
        ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.name}").split()
        return json.loads(docker("inspect", *ids)) if ids else []

    def states(self) -> dict[str, str]:
        """Service → its health (`healthy`, `starting`…), or its state when it has none."""
        states = {}
        for info in self.containers():
            service = info["Config"]["Labels"]["com.docker.compose.service"]
            health = (info["State"].get("Health") or {}).get("Status")
            states[service] = health or f"{info['State']['Status']}:{info['State']['ExitCode']}"
        return states

    def wait_healthy(self, within_s: float = 180.0) -> dict[str, str]:
        deadline = time.monotonic() + within_s
        while True:
            states = self.states()
            settled = all(s in {"healthy", "exited:0"} for s in states.values())
            if states and settled:
                return states
            if time.monotonic() > deadline:
                logs = self.compose("logs", "--tail", "40")
                raise AssertionError(f"not healthy within {within_s}s: {states}\n{logs}")
            time.sleep(1)

    def leftovers(self) -> dict[str, list[str]]:
        """What of this project the engine still holds."""
        label = f"label=com.docker.compose.project={self.name}"
        return {
            "containers": docker("ps", "-aq", "--filter", label).split(),
            "networks": docker("network", "ls", "-q", "--filter", label).split(),
            "volumes": docker("volume", "ls", "-q", "--filter", label).split(),
        }


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout
