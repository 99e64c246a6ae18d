"""The container backend: the unibus image, run with testcontainers.

Two containers from one image on a private network: `nats-server` with JetStream and a
websocket listener (the image's /etc/unibus/nats/standalone.conf), and `unibus serve`
joined to it, plus `unibus shim` when asked. The NATS inside is the binary the image
ships, so the tests and a deployment run the same one. Without an image name, the image
is built from deploy/Dockerfile of the checkout this package was installed from.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from testcontainers.core.container import DockerContainer
from testcontainers.core.image import DockerImage
from testcontainers.core.network import Network

from ..callout.keys import BoundaryKeys
from .engine import docker_unavailable_reason
from .stack import BackendUnavailable, Exited, Stack, shim_available, wait_service, wait_shim

NATS_ALIAS = "nats"
NATS_CONFIG = "/etc/unibus/nats/standalone.conf"
KEYS_DIR = "/run/unibus/keys"
SHIM_PORT = 8000
BUILT_TAG = "unibus-control-plane:test"

_C = TypeVar("_C", bound=DockerContainer)

# service/unibus/testing/container.py -> the repository root, in an editable checkout.
_CHECKOUT = Path(__file__).resolve().parents[3]
# What deploy/Dockerfile copies; the build context holds nothing else (no .venv, no .git).
_CONTEXT_PATHS = ("pyproject.toml", "README.md", "service", "deploy")


class UnibusContainer(DockerContainer):
    """One container of the unibus image joined to NATS at `nats_url` (inside the network).

    Runs `unibus serve` by default; `.as_shim()` turns it into the HTTP shim.
    """

    def __init__(self, image: str, nats_url: str, env: Mapping[str, str] | None = None) -> None:
        super().__init__(image)
        self.with_env("UNIBUS_NATS_URL", nats_url)
        for key, value in (env or {}).items():
            self.with_env(key, value)
        self.with_command(["unibus", "serve"])

    def with_keys(self, host_dir: Path, shim: bool = False) -> UnibusContainer:
        """The boundary's seeds, mounted read-only: all of them for the service, the
        shim's alone is what `unibus shim` reads."""
        self.with_volume_mapping(str(host_dir), KEYS_DIR, "ro")
        self.with_env(
            "UNIBUS_NKEY" if shim else "UNIBUS_KEYS_DIR", f"{KEYS_DIR}/shim.nk" if shim else KEYS_DIR
        )
        return self

    def as_shim(self, port: int = SHIM_PORT) -> UnibusContainer:
        self.with_env("UNIBUS_HTTP_LISTEN", f"0.0.0.0:{port}")
        self.with_exposed_ports(port)
        self.with_command(["unibus", "shim"])
        return self


class NatsContainer(DockerContainer):
    """nats-server with JetStream and websocket, from the unibus image."""

    def __init__(self, image: str, keys: BoundaryKeys) -> None:
        super().__init__(image)
        for role, key in keys.public().items():
            self.with_env(f"UNIBUS_{role}_KEY", key)
        self.with_command(["nats-server", "-c", NATS_CONFIG])
        self.with_exposed_ports(4222, 8080)

    def url(self, port: int = 4222, scheme: str = "nats") -> str:
        return f"{scheme}://{self.get_container_host_ip()}:{self.get_exposed_port(port)}"


class ContainerBackend:
    """`image=None` builds deploy/Dockerfile from this checkout (tagged unibus-control-plane:test)."""

    name = "container"

    def __init__(
        self,
        image: str | None = None,
        env: Mapping[str, str] | None = None,
        *,
        shim: bool | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        self.image = image
        self.env = dict(env or {})
        self.shim = shim_available() if shim is None else shim
        self.ready_timeout_s = ready_timeout_s
        self._network: Network | None = None
        self._containers: list[DockerContainer] = []
        self._keys: tempfile.TemporaryDirectory[str] | None = None

    def image_unavailable_reason(self) -> str | None:
        if self.image is None and not (_CHECKOUT / "deploy" / "Dockerfile").exists():
            return "no image named (UNIBUS_TEST_IMAGE) and no deploy/Dockerfile beside this package to build"
        return None

    def start(self) -> Stack:
        reason = docker_unavailable_reason() or self.image_unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(reason)
        image = self.image or build_image()
        keys_dir = self._keys_dir()
        keys = BoundaryKeys.ensure(keys_dir)
        self._readable_by_the_image_user(keys_dir)
        self._network = Network().create()
        nats = self._run(NatsContainer(image, keys).with_network_aliases(NATS_ALIAS))
        internal_url = f"nats://{NATS_ALIAS}:4222"
        service = self._run(UnibusContainer(image, internal_url, self.env).with_keys(keys_dir))
        url = nats.url()
        wait_service("unibus serve container", url, self.env, _death(service), self.ready_timeout_s)
        shim_url = None
        if self.shim:
            shim = self._run(
                UnibusContainer(image, internal_url, self.env).with_keys(keys_dir, True).as_shim()
            )
            shim_url = f"http://{shim.get_container_host_ip()}:{shim.get_exposed_port(SHIM_PORT)}"
            wait_shim("unibus shim container", shim_url, _death(shim), self.ready_timeout_s)
        return Stack(self.name, url, nats.url(8080, "ws"), shim_url)

    def stop(self) -> None:
        for container in reversed(self._containers):
            container.stop()
        self._containers.clear()
        if self._network is not None:
            self._network.remove()
            self._network = None
        if self._keys is not None:
            self._keys.cleanup()
            self._keys = None

    def _keys_dir(self) -> Path:
        self._keys = tempfile.TemporaryDirectory(prefix="unibus-stack-keys-")
        return Path(self._keys.name)

    @staticmethod
    def _readable_by_the_image_user(keys_dir: Path) -> None:
        """The image runs as uid 10001 and the seeds are 0600 for us: these keys live and
        die with this stack, so they are opened up rather than chowned (which needs root)."""
        keys_dir.chmod(0o755)
        for seed in keys_dir.iterdir():
            seed.chmod(0o644)

    def _run(self, container: _C) -> _C:
        assert self._network is not None
        container.with_network(self._network)
        self._containers.append(container)
        container.start()
        return container


def _death(container: DockerContainer) -> Exited:
    def died() -> str | None:
        container.reload()
        if container.status not in {"exited", "dead"}:
            return None
        stdout, stderr = container.get_logs()
        return (stdout + stderr).decode(errors="replace")[-4000:]

    return died


def build_image(tag: str = BUILT_TAG) -> str:
    """Build deploy/Dockerfile from a clean copy of the sources the image needs.

    A copy, because docker-py builds with the classic builder, which ignores the
    Dockerfile-specific ignore file and would send .venv and .git along.
    """
    with tempfile.TemporaryDirectory(prefix="unibus-image-") as context:
        for rel in _CONTEXT_PATHS:
            source, target = _CHECKOUT / rel, Path(context) / rel
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(source, target)
        DockerImage(path=context, dockerfile_path="deploy/Dockerfile", tag=tag, clean_up=False).build()
    return tag
