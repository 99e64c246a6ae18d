"""The README's `unibus` examples stay true: each command line parses, and the blocks a
reader can paste alone (discovery, raw requests) run as written against a real service."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from pathlib import Path

import pytest

from unibus.cli import build_parser
from unibus.runner import Running

from harness.cli import UNIBUS
from harness.plane import StartPlane

README = Path(__file__).resolve().parent.parent / "README.md"
COMMAND = re.compile(r"(export \S+|\.venv/bin/unibus (?:(?!\s{2,}(?:#|\.venv|export)).)*)")


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)


def commands(block: str) -> list[list[str]]:
    """Each `export` and `.venv/bin/unibus …` of a block, as argv, comments dropped; the
    two-terminal block holds two commands on some lines."""
    found = []
    for line in block.splitlines():
        for match in COMMAND.finditer(line):
            # `eval "$(.venv/bin/unibus …)"` runs what the command prints: the command itself.
            found.append(shlex.split(match.group(1).removesuffix(')"'), comments=True))
    return found


def test_every_unibus_line_of_the_readme_parses() -> None:
    lines = [argv for block in shell_blocks() for argv in commands(block) if argv[0] != "export"]
    covered = {argv[1] for argv in lines}
    assert covered >= {"service", "keygen", "room", "send", "history", "tail", "request", "sign"}, covered
    parser = build_parser()
    for argv in lines:
        try:
            parser.parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"README line no longer parses ({exc.code}): {shlex.join(argv)}")


def pasteable(first_command: str) -> list[list[str]]:
    block = next(b for b in shell_blocks() if first_command in b)
    return commands(block)


async def run_block(argvs: list[list[str]], env: dict[str, str], cwd: Path) -> list[str]:
    outputs = []
    for argv in argvs:
        if argv[0] == "export":
            name, _, value = argv[1].partition("=")
            env[name] = value
            continue
        proc = await asyncio.create_subprocess_exec(
            *UNIBUS,
            *argv[1:],
            env=env,
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, (shlex.join(argv), err.decode())
        outputs.append(out.decode())
    return outputs


async def test_the_discovery_and_raw_request_blocks_run_as_written(
    tmp_path: Path, bounded_plane: Running
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIBUS_")}
    env |= {"UNIBUS_NATS_URL": bounded_plane.nats_url, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    listed = await run_block(pasteable(".venv/bin/unibus service ls"), dict(env), tmp_path)
    assert "unibus-control-plane" in listed[0] and "$UNIBUS.CTL.rooms.*.history" in listed[1]

    raw = pasteable(".venv/bin/unibus request '$UNIBUS.CTL.rooms.create'")
    await run_block([["unibus", "keygen", "--identity", "alice.seed"]], dict(env), tmp_path)
    outputs = await run_block(raw, dict(env), tmp_path)
    assert json.loads(outputs[0])["id"] == "raw"
    reads = raw[-2:]  # the stream stores the frame asynchronously to the publish: read again
    for _ in range(100):
        if json.loads(outputs[-2])["messages"]:
            break
        await asyncio.sleep(0.05)
        outputs = await run_block([raw[0], *reads], dict(env), tmp_path)
    history = json.loads(outputs[-2])
    assert len(history["messages"]) == 1 and history["seqs"] == [1], history
    packed = json.loads(outputs[-1])
    assert packed["headers"]["Content-Type"] == "application/msgpack" and packed["body_base64"]


async def test_the_nats_conventions_block_runs_as_written(tmp_path: Path, bounded_plane: Running) -> None:
    """`NATS_URL`, `-v`, `-s` and `--timeout 2s` as the README shows them, the port being
    the test server's instead of 4222."""
    block = next(b for b in shell_blocks() if "export NATS_URL" in b)
    argvs = commands(block.replace("nats://127.0.0.1:4222", bounded_plane.nats_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNIBUS_", "NATS_"))}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    outputs = await run_block(argvs, env, tmp_path)
    assert all("unibus-control-plane" in out for out in outputs), outputs


async def test_the_signed_curl_block_runs_as_written(tmp_path: Path, start_bounded: StartPlane) -> None:
    """`unibus sign` prints a curl command the shell runs (`eval`), and it gets the room's
    history through the shim, signed, in enforce mode."""
    plane = await start_bounded(http_listen="127.0.0.1:0")
    assert plane.http_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNIBUS_", "NATS_"))}
    env |= {"UNIBUS_NATS_URL": plane.nats_url, "UNIBUS_SHIM_URL": plane.http_url}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "config"), "UNIBUS_IDENTITY": str(tmp_path / "alice.seed")}
    await run_block([["unibus", "keygen"], ["unibus", "room", "create", "lobby"]], dict(env), tmp_path)
    block = next(b for b in shell_blocks() if "unibus sign" in b)
    printed = await run_block(commands(block), dict(env), tmp_path)
    assert printed[0].startswith("curl -s -H 'Unibus-Signer: U") and printed[0].rstrip().endswith(
        "/rooms/lobby/history?limit=10'"
    )
    evaluated = block.splitlines()[-1].partition("   #")[0].replace(".venv/bin/unibus", shlex.join(UNIBUS))
    shell = await asyncio.create_subprocess_exec(
        "sh", "-c", evaluated, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(shell.communicate(), 60)
    assert shell.returncode == 0 and json.loads(out)["messages"] == [], out
