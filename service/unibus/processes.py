"""Stopping the child processes we start (nats-server, service instances, the shim)."""

from __future__ import annotations

import signal
import subprocess


def stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """SIGTERM, so a server flushes JetStream and a service drains its connection; SIGKILL
    only if it has not exited within `timeout_s`."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        kill_process(process)


def kill_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL: no flush, no drain; what a crash looks like."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
