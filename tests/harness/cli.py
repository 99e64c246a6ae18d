"""The `unibus` command as a subprocess, started one way: this interpreter running the CLI
of the code under test (not whatever `unibus` is first on PATH), with an environment that
holds no UNIBUS_* or NATS_* setting (the CLI reads natscli's too) of the developer's own
unless the test passes it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

UNIBUS = [sys.executable, "-c", "import sys; from unibus.cli import main; sys.exit(main())"]


def clean_env(**env: str) -> dict[str, str]:
    """This process's environment without any UNIBUS_* or NATS_* setting, plus `env`."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("UNIBUS_", "NATS_"))} | env


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A command that ends by itself: its exit code, stdout and stderr."""
    return subprocess.run([*UNIBUS, *args], env=clean_env(**env), capture_output=True, text=True, timeout=60)


def start_cli(*args: str, logs: bool = True, **env: str) -> subprocess.Popen[str]:
    """A long-running command (`serve`, `shim`): stdout, with its log lines when `logs`."""
    stderr = subprocess.STDOUT if logs else subprocess.DEVNULL
    return subprocess.Popen(
        [*UNIBUS, *args], env=clean_env(**env), stdout=subprocess.PIPE, stderr=stderr, text=True
    )


async def unibus(*args: str, env: dict[str, str], timeout_s: float = 120.0) -> tuple[int, str]:
    """A command run without blocking the event loop (a control plane may run on it):
    its exit code and its output, stdout and stderr together. `env` is the whole
    environment (see `clean_env`)."""
    proc = await asyncio.create_subprocess_exec(
        *UNIBUS, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode or 0, out.decode()
