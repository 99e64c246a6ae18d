"""The Go side of the benchmark: bench/go built once, then run as the floor (an ordered
consumer straight from JetStream) and as a caller of the service's history.

Built offline in GOPATH mode against Debian's nats.go (golang-go,
golang-github-nats-io-go-nats-dev), with examples/go/peer/request.go beside it for the
protocol's signed requests. Without Go the rows say so instead of failing the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

from unibus.identity import Identity

from .measure import Latency

REPO = Path(__file__).resolve().parent.parent
SOURCES = [REPO / "bench" / "go" / "main.go", REPO / "examples" / "go" / "peer" / "request.go"]
SYSTEM_GOPATH = "/usr/share/gocode"


def build(workdir: Path, name: str = "benchgo", sources: list[Path] = SOURCES) -> Path | None:
    """The `name` binary built from `sources` (benchgo by default; bench/storm.py builds
    stormgo), or None (and why, on stdout) when Go or nats.go is missing."""
    go = shutil.which("go")
    if go is None or not Path(SYSTEM_GOPATH, "src/github.com/nats-io/nats.go").is_dir():
        print("bench: no Go toolchain or Debian's nats.go; the Go rows are skipped")
        return None
    package = workdir / "gopath" / "src" / name
    package.mkdir(parents=True, exist_ok=True)
    for source in sources:
        shutil.copy(source, package / source.name)
    binary = workdir / name
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{SYSTEM_GOPATH}:{workdir / 'gopath'}",
        "GOFLAGS": "",
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
    }
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=package, env=env, check=True)
    return binary


async def run(binary: Path, identity: Identity, workdir: Path, *args: str) -> dict[int, Latency]:
    """One benchgo run: its per-limit samples, timed inside the Go process."""
    seed = workdir / f"{identity.public_key[:12]}.seed"
    identity.save(seed)
    proc = await asyncio.create_subprocess_exec(
        str(binary), "-seed", str(seed), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchgo {' '.join(args)}: {err.decode().strip()}")
    return {int(limit): Latency(samples) for limit, samples in json.loads(out).items()}
