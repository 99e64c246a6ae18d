"""One data directory, one server: a lock held for as long as an embedded nats-server
runs on a directory.

Two nats-servers on one JetStream store corrupt each other's view of it (the second
rebuilds "outdated" stream state and rewrites the first one's config), and nothing in
nats-server itself refuses a shared store. So `unibus serve` takes an advisory `flock`
on `<data dir>/unibus.lock` before it starts the server, and writes its pid there for
the refusal to name. The kernel drops the lock when the process dies however it dies,
so a crash never leaves a stale lock behind to clean up by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import StartRefused

LOCK_FILE = "unibus.lock"


class DataDirInUse(StartRefused):
    """Another live process holds the data directory."""


@contextlib.contextmanager
def exclusive(data_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold `data_dir` for this process until the block exits; DataDirInUse if another
    process holds it."""
    directory = Path(data_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DataDirInUse(
                f"data directory {directory} is in use by pid {holder} (another `unibus serve`); "
                "stop it, or give this one its own --data-dir (UNIBUS_DATA_DIR)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield directory
    finally:
        os.close(fd)  # releases the lock
