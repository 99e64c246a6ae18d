"""`unibus` speaks natscli's conventions: `-s`, `NATS_URL`, `NATS_CREDS`, `NATS_NKEY`,
`NATS_TIMEOUT`, natscli's own context files, durations, and connection flags anywhere on
the line; a `UNIBUS_*` setting outranks its `NATS_*` twin, and `-v` says which server
was used and why."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from unibus.cli import build_parser
from unibus.cli.target import duration
from unibus.identity import Identity
from unibus.natsserver import free_port
from unibus.runner import Running

from harness.cli import UNIBUS


def env_without_nats(home: Path, **extra: str) -> dict[str, str]:
    """No UNIBUS_* or NATS_* setting of this shell leaks in; config lives under `home`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("UNIBUS_", "NATS_"))}
    return kept | {"XDG_CONFIG_HOME": str(home)} | extra


async def unibus(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """In a thread: the control plane answering the auth callout runs on this loop."""
    return await asyncio.to_thread(
        subprocess.run, [*UNIBUS, *args], env=env, capture_output=True, text=True, timeout=60
    )


def nowhere() -> str:
    return f"nats://127.0.0.1:{free_port()}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A user whose identity is made, as `unibus keygen` makes it."""
    seed = tmp_path / "unibus" / "identity.seed"
    Identity.generate().save(seed)
    return tmp_path


async def test_nats_url_and_dash_s_pick_the_server(home: Path, bounded_plane: Running) -> None:
    """`NATS_URL` was ignored without a word: a user could be on another server than they
    thought. Now it is read, `-s` beats it, `UNIBUS_NATS_URL` beats it, and `-v` names the
    server and where it came from."""
    url = bounded_plane.nats_url
    by_env = await unibus("-v", "room", "list", env=env_without_nats(home, NATS_URL=url))
    assert by_env.returncode == 0, by_env.stderr
    assert f"nats {url} (from NATS_URL)" in by_env.stderr

    wrong = await unibus("room", "list", "--timeout", "2s", env=env_without_nats(home, NATS_URL=nowhere()))
    assert wrong.returncode == 1 and "(NATS_URL)" in wrong.stderr, wrong.stderr

    flag = await unibus("room", "list", "-s", url, env=env_without_nats(home, NATS_URL=nowhere()))
    assert flag.returncode == 0, flag.stderr
    both = env_without_nats(home, NATS_URL=nowhere(), UNIBUS_NATS_URL=url)
    ours = await unibus("-v", "room", "list", env=both)
    assert ours.returncode == 0 and "(from UNIBUS_NATS_URL)" in ours.stderr, ours.stderr


async def test_global_flags_anywhere_on_the_line(home: Path, bounded_plane: Running) -> None:
    url = bounded_plane.nats_url
    env = env_without_nats(home)
    for argv in (
        ["--server", url, "room", "list"],
        ["room", "-s", url, "list"],
        ["room", "list", "--nats-url", url],
        ["-s", url, "--timeout", "5s", "service", "ls"],
        ["service", "list", "unibus-control-plane", "-s", url],
        ["--nats-url", url, "health"],
    ):
        result = await unibus(*argv, env=env)
        assert result.returncode == 0, (argv, result.stderr)


async def test_a_natscli_context_works_unchanged(home: Path, bounded_plane: Running) -> None:
    """The context natscli selected (`context.txt`), or one named by `--context` or
    `NATS_CONTEXT`, gives the url and the nkey (the identity), as natscli reads it."""
    contexts = home / "nats" / "context"
    contexts.mkdir(parents=True)
    seed = home / "ops.seed"
    ops = Identity.generate()
    ops.save(seed)
    context = {
        "description": "the unibus dev server",
        "url": bounded_plane.nats_url,
        "nkey": str(seed),
        "inbox_prefix": f"_INBOX.{ops.public_key}",
        "jetstream_domain": "",
        "color_scheme": "",
    }
    (contexts / "dev.json").write_text(json.dumps(context))
    (contexts / "broken.json").write_text(json.dumps(context | {"url": nowhere()}))
    env = env_without_nats(home)

    named = await unibus("-v", "--context", "dev", "--json", "keygen", env=env)
    assert named.returncode == 1 and ops.public_key in named.stderr  # the context's nkey exists
    created = await unibus("--json", "room", "create", "ctx", "--context", "dev", env=env)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["owner"] == ops.public_key  # signed as the context's nkey

    by_env = await unibus("-v", "room", "list", "--json", env=env | {"NATS_CONTEXT": "dev"})
    assert by_env.returncode == 0, by_env.stderr
    assert [r["id"] for r in json.loads(by_env.stdout)["rooms"]] == ["ctx"]
    assert "context 'dev'" in by_env.stderr

    (home / "nats" / "context.txt").write_text("dev\n")  # `nats context select dev`
    selected = await unibus("room", "list", "--json", env=env)
    assert [r["id"] for r in json.loads(selected.stdout)["rooms"]] == ["ctx"], selected.stderr
    # A flag or NATS_URL beats the context's url, as in natscli.
    overridden = await unibus("room", "list", "--context", "broken", "-s", bounded_plane.nats_url, env=env)
    assert overridden.returncode == 0, overridden.stderr

    unknown = await unibus("room", "list", "--context", "nope", env=env)
    assert unknown.returncode == 2
    assert "--context: unknown context 'nope'" in unknown.stderr and "nope.json" in unknown.stderr
    # A name is a file under the context directory, never a path out of it (as natscli).
    (home / "outside.json").write_text(json.dumps(context))
    climbing = await unibus("room", "list", "--context", "../../outside", env=env)
    assert climbing.returncode == 2 and "invalid context name '../../outside'" in climbing.stderr
    unsupported = await unibus("room", "list", "--context", str(home / "odd.json"), env=env)
    assert unsupported.returncode == 2 and "unknown context 'odd'" in unsupported.stderr
    (home / "odd.json").write_text(json.dumps(context | {"socks_proxy": "127.0.0.1:1080"}))
    refused = await unibus("room", "list", "--context", str(home / "odd.json"), env=env)
    assert refused.returncode == 2 and "sets socks_proxy, which unibus does not support" in refused.stderr
    bad_env = await unibus("room", "list", env=env | {"NATS_CONTEXT": "nope"})
    assert bad_env.returncode == 2 and bad_env.stderr.startswith("unibus: NATS_CONTEXT: unknown context")


def test_timeouts_take_durations_and_seconds() -> None:
    assert duration("5s") == 5.0 and duration("500ms") == 0.5 and duration("1m30s") == 90.0
    assert duration("10") == 10.0 and duration("2.5") == 2.5
    for bad in ("5x", "s", "-1", "0", "5s3"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
    parser = build_parser()
    assert parser.parse_args(["room", "list", "--timeout", "500ms"]).timeout == 0.5
    assert parser.parse_args(["--timeout", "2", "health"]).timeout == 2.0


async def test_bad_nats_timeout_names_the_variable(home: Path) -> None:
    result = await unibus("room", "list", env=env_without_nats(home, NATS_TIMEOUT="soon"))
    assert result.returncode == 2
    assert result.stderr.startswith("unibus: NATS_TIMEOUT: 'soon' is not a duration")
