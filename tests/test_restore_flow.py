"""The restore flow for `make run` users, from docs/operations.md, run as written: a
backup while `make run` runs, the store lost, the embedded nats-server alone
(`unibus serve --nats-only`), the restore, `make run` again, every frame back, and a
change that waits out replay protection instead of failing."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from unibus.natsserver import free_port
from unibus.processes import stop_process

from harness.cli import UNIBUS

OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def documented_flow() -> list[list[str]]:
    """The block's command lines, comments dropped, `make run` as the `unibus serve` it runs."""
    block = next(
        b for b in re.findall(r"```sh\n(.*?)```", OPERATIONS.read_text(), re.S) if "--nats-only" in b
    )
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [["unibus", "serve"] if argv == ["make", "run"] else argv for argv in lines if argv]


REPLAY_WINDOW_S = 15
"""Replay protection's window (UNIBUS_CLOCK_SKEW_S) for the test: the wait is seconds."""


class Terminals:
    """The user's terminals: one long-running `serve` at a time, commands beside it.
    Ports are free ones instead of 4222 (a test never takes fixed ports); replay
    protection's window is short so the wait it causes is seconds."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("UNIBUS_", "NATS_"))}
        self.server_env = base | {
            "UNIBUS_EMBEDDED_PORT": str(port),
            "UNIBUS_WEBSOCKET_PORT": "0",
            "UNIBUS_CLOCK_SKEW_S": str(REPLAY_WINDOW_S),
        }
        self.peer_env = base | {
            "UNIBUS_NATS_URL": f"nats://127.0.0.1:{port}",
            "UNIBUS_IDENTITY": str(cwd / "alice.seed"),
        }
        self.server: subprocess.Popen[str] | None = None
        self.began: dict[str, float] = {}
        """When each command was started (wall clock), by its name."""

    def start(self, argv: list[str]) -> str:
        self.stop()
        self.server = subprocess.Popen(
            [*UNIBUS, *argv[1:]], cwd=self.cwd, env=self.server_env, stdout=subprocess.PIPE, text=True
        )
        assert self.server.stdout is not None
        ready = self.server.stdout.readline()
        assert "ready" in ready, ready
        return ready

    def stop(self) -> None:
        """Ctrl-C, as the user does in that terminal."""
        if self.server is not None:
            self.server.send_signal(signal.SIGINT)
            self.server.wait(timeout=30)
            assert self.server.returncode == 0
            self.server = None

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if argv[0] == "mv":
            self.stop()  # the store is moved once `make run` has stopped
            shutil.move(self.cwd / argv[1], self.cwd / argv[2])
            return subprocess.CompletedProcess(argv, 0, "", "")
        if argv[:2] == [".venv/bin/unibus", "serve"] or argv[:2] == ["unibus", "serve"]:
            return subprocess.CompletedProcess(argv, 0, self.start(argv), "")
        # backup and restore find the embedded server as `make run` left it (its port, its
        # keys under data/); a peer command is told the port, 4222 being taken by nobody here.
        env = self.server_env if argv[1] in ("backup", "restore") else self.peer_env
        self.began[argv[1]] = time.time()
        done = subprocess.run(
            [*UNIBUS, *argv[1:]], cwd=self.cwd, env=env, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, (argv, done.stderr)
        return done


def test_the_make_run_restore_flow_runs_as_written(tmp_path: Path) -> None:
    flow = documented_flow()
    commands = [argv[1] for argv in flow if argv[0] != "mv"]
    assert commands == ["backup", "serve", "restore", "serve", "history", "room"]
    terminals = Terminals(tmp_path)
    try:
        terminals.start(["unibus", "serve"])  # `make run`, before the loss
        for argv in (["keygen"], ["room", "create", "lobby"], ["send", "lobby", "kept across the loss"]):
            terminals.run(["unibus", *argv])
        outputs = [terminals.run(argv) for argv in flow]
    finally:
        if terminals.server is not None:
            stop_process(terminals.server)
    alone, restored, history, created = outputs[2].stdout, outputs[3].stdout, outputs[-2], outputs[-1]
    assert alone.startswith("embedded nats-server ready (no control plane)")
    assert restored.startswith("restored the room bucket and 1 room streams (1 frames")
    assert history.stdout.rstrip().endswith("kept across the loss")
    if terminals.began["room"] < terminals.began["restore"] + REPLAY_WINDOW_S:
        # Signed inside the window for certain (the restore stamps its time once it runs):
        # the CLI waits and says so. On a machine so busy that the flow took longer, the
        # window may have passed and the change goes through at once, as it should.
        assert "replay protection resumes after a restore; waiting" in created.stderr
    assert created.stdout.startswith("created garden")
    assert (tmp_path / "data" / "nats.lost").is_dir()


def test_a_restore_with_nats_down_names_the_url(tmp_path: Path) -> None:
    """It said "no servers available" without saying where it had looked."""
    down = f"nats://127.0.0.1:{free_port()}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("UNIBUS_", "NATS_"))}
    for env, flags, source in (
        (base | {"UNIBUS_NATS_URL": down}, [], "UNIBUS_NATS_URL"),
        (base, ["-s", down], "--server"),
    ):
        done = subprocess.run(
            [*UNIBUS, "restore", str(tmp_path), "--timeout", "2s", *flags],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith(f"unibus: cannot reach NATS at {down} ({source}): "), done.stderr
