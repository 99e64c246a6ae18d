"""Go programs the suite builds: Debian's toolchain and Debian's Go packages, in GOPATH
mode, offline.

Debian ships nats.go and nkeys as source under /usr/share/gocode
(golang-github-nats-io-go-nats-dev). With GO111MODULE=off and GOPROXY=off the Go tool
builds against exactly those and never asks a module proxy, which neither this machine nor
CI can reach. Where the toolchain or a package is missing a test skips and names the apt
command; under CI (`.ci/run` installs them) that is a failure instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

APT = "apt-get install golang-go golang-github-nats-io-go-nats-dev"
SYSTEM_GOPATH = Path("/usr/share/gocode")
NATS_GO = "github.com/nats-io/nats.go"


def require(ok: bool, reason: str) -> None:
    """Skip with `reason` and the apt command, or fail under CI, unless `ok`."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the Go tests: `{APT}`)")
    pytest.skip(f"{reason}: `{APT}`")


def toolchain() -> str:
    """The `go` command, once Debian's nats.go is there to build against."""
    go = shutil.which("go")
    require(go is not None, "no `go` on PATH")
    nats_go = SYSTEM_GOPATH / "src" / NATS_GO
    require(nats_go.is_dir(), f"Debian's nats.go is missing ({nats_go})")
    assert go is not None
    return go


def gopath(scratch: Path) -> list[Path]:
    """Debian's packages first, then the user's own GOPATH, then `scratch` for the build."""
    own = os.environ.get("GOPATH") or str(Path.home() / "go")
    return [SYSTEM_GOPATH, *(Path(p) for p in own.split(os.pathsep) if p), scratch]


def run_go(go: str, args: list[str], cwd: Path, scratch: Path) -> subprocess.CompletedProcess[str]:
    """`go <args>` in GOPATH mode, with no module proxy and no cgo."""
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": os.pathsep.join(str(p) for p in gopath(scratch)),
        "GOFLAGS": "",
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
    }
    return subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def build(package: Path, out_dir: Path, name: str) -> Path:
    """The program in `package`, built into `out_dir`; a failed build fails the test."""
    go = toolchain()
    binary = out_dir / name
    result = run_go(go, ["build", "-o", str(binary), "."], package, out_dir / "gopath")
    assert result.returncode == 0, result.stderr
    return binary


def imports(source: str) -> list[str]:
    """The import paths of one Go source file (single imports and import blocks)."""
    block = re.search(r"^import \((.*?)^\)", source, re.M | re.S)
    lines = block.group(1).splitlines() if block else re.findall(r"^import (.*)$", source, re.M)
    return [m.group(1) for line in lines if (m := re.search(r'"([^"]+)"', line))]


def missing(paths: list[str], scratch: Path) -> list[str]:
    """The non-standard packages of `paths` found in no GOPATH entry. Standard-library
    paths are the ones whose first element has no dot."""
    third_party = [p for p in paths if "." in p.split("/")[0]]
    return [p for p in third_party if not any((root / "src" / p).is_dir() for root in gopath(scratch))]
