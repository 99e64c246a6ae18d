"""Which NATS a command talks to and as whom, resolved the way the `nats` CLI does.

A NATS user already has `NATS_URL`, `NATS_CREDS`, `NATS_NKEY`, `NATS_TIMEOUT` and, often,
a `nats context` (`$XDG_CONFIG_HOME/nats/context/<name>.json`, the selected one named in
`$XDG_CONFIG_HOME/nats/context.txt`). `unibus` reads the same settings, in natscli's
order (a flag, then its environment variable, then the context), with one addition: a
`UNIBUS_*` variable set beside a `NATS_*` one wins, so a deployment's own settings never
lose to a developer's shell. Every resolved value remembers where it came from, and
`-v` says which server was used and why: no one is on another server than they think.

`unibus serve` is no client: it reads `-s` and `--context` when given on its line, and
`UNIBUS_NATS_URL`, but neither `NATS_*` nor the selected context. Its default is the
embedded server, which settings a natscli user made for their clients (`NATS_URL` at a
local 4222, say) must not replace behind their back.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .output import EXIT_USAGE, CliError

DEFAULT_URL = "nats://127.0.0.1:4222"

# What a context file may hold that `unibus` cannot honour: refused by name, never ignored.
_UNSUPPORTED = ("nsc", "socks_proxy", "tls_first", "user_jwt", "windows_cert_store")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The connection flags every (sub)command accepts, anywhere on the line. Their
    defaults are suppressed, so a flag given before the command survives the subcommand's
    parse (argparse copies a subparser's values over the parent's)."""
    quiet = argparse.SUPPRESS
    parser.add_argument(
        "-s",
        "--server",
        "--nats-url",
        dest="server",
        default=quiet,
        metavar="URL",
        help="NATS server URL(s), comma-separated (UNIBUS_NATS_URL, NATS_URL, the context's url)",
    )
    parser.add_argument(
        "--creds", default=quiet, metavar="FILE", help="NATS credentials file (UNIBUS_NATS_CREDS, NATS_CREDS)"
    )
    parser.add_argument(
        "--nkey", default=quiet, metavar="FILE", help="nkey seed file to connect and sign with (NATS_NKEY)"
    )
    parser.add_argument(
        "--context", default=quiet, metavar="NAME", help="a `nats context` to connect with (NATS_CONTEXT)"
    )
    parser.add_argument(
        "--timeout",
        default=quiet,
        type=duration,
        metavar="DURATION",
        help="how long to wait for NATS and the service: 5s, 500ms, 1m or seconds (NATS_TIMEOUT)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=quiet, help="debug logging, and which server was used"
    )


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """Seconds, from a Go duration as natscli takes it (`5s`, `500ms`, `1m30s`) or a plain
    number of seconds (`10`, `2.5`) as earlier `unibus` versions did."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration (5s, 500ms, 1m30s) or a number of seconds"
            ) from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a timeout must be more than zero")
    return seconds


@dataclass(frozen=True)
class Setting:
    value: str
    source: str
    """Where it came from: `-s`, `NATS_URL`, `context "prod"`, `default`…"""


@dataclass(frozen=True)
class Context:
    """A natscli context file, as far as `unibus` uses one."""

    name: str
    path: Path
    settings: dict[str, Any]

    def get(self, key: str) -> str | None:
        value = self.settings.get(key)
        if not isinstance(value, str) or not value:
            return None
        if key == "creds":  # natscli expands the environment in this one path
            value = os.path.expandvars(value)
        if key in ("creds", "nkey", "cert", "key", "ca"):
            value = os.path.expanduser(value)
        return value


def nats_config_dir(env: dict[str, str]) -> Path:
    """natscli's parent directory: `$XDG_CONFIG_HOME/nats`, else `~/.config/nats`."""
    return Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "nats"


def load_context(name: str | None, source: str, env: dict[str, str]) -> Context | None:
    """The named context, else the one `context.txt` selects, else none. A name that is
    an absolute path is that file, as in natscli."""
    base = nats_config_dir(env)
    if name is None:
        selected = base / "context.txt"
        try:
            name = selected.read_text().strip()
        except OSError:
            return None
        if not name:
            return None
        source = f"selected in {selected}"
    if os.path.isabs(name):
        path = Path(name)
        name = path.stem
    else:
        if ".." in name or os.sep in name:
            raise CliError(f"{source}: invalid context name {name!r}", EXIT_USAGE)
        path = base / "context" / f"{name}.json"
    try:
        settings = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"{source}: unknown context {name!r} (no {path})", EXIT_USAGE) from None
    except (OSError, ValueError) as exc:
        raise CliError(f"{source}: cannot read context {path}: {exc}", EXIT_USAGE) from None
    if not isinstance(settings, dict):
        raise CliError(f"{source}: {path} is not a context (a JSON object)", EXIT_USAGE)
    unsupported = [key for key in _UNSUPPORTED if settings.get(key)]
    if unsupported:
        raise CliError(
            f"context {name!r} ({path}) sets {', '.join(unsupported)}, which unibus does not support",
            EXIT_USAGE,
        )
    return Context(name, path, settings)


@dataclass(frozen=True)
class Target:
    """Everything a connection needs besides the identity's own key."""

    url: Setting | None
    """None: nothing set it (the command decides: a default URL, or the embedded server)."""
    creds: Setting | None
    nkey: Setting | None
    """The seed file the connection authenticates (and a peer signs) with."""
    context: Context | None
    timeout_s: float

    def option(self, key: str) -> str | None:
        return self.context.get(key) if self.context else None

    def url_or_default(self) -> Setting:
        return self.url or Setting(DEFAULT_URL, "default")

    def connect_options(self) -> dict[str, Any]:
        """nats-py keyword arguments for what the context sets beyond url, creds and nkey."""
        extra: dict[str, Any] = {}
        if self.option("user"):
            extra["user"], extra["password"] = self.option("user"), self.option("password") or ""
        if self.option("token"):
            extra["token"] = self.option("token")
        cert, key, ca = self.option("cert"), self.option("key"), self.option("ca")
        if cert or ca:
            tls = ssl.create_default_context(cafile=ca)
            if cert and key:
                tls.load_cert_chain(cert, key)
            extra["tls"] = tls
        return extra

    def config_overrides(self) -> dict[str, Any]:
        """The `Config.from_env` overrides for what this target resolved."""
        return {
            "nats_url": self.url.value if self.url else None,
            "nats_creds": self.creds.value if self.creds else None,
        }

    @property
    def inbox_prefix(self) -> str | None:
        return self.option("inbox_prefix")

    def describe(self) -> str:
        url = self.url_or_default()
        return f"nats {url.value} (from {url.source})"


def resolve(
    args: argparse.Namespace,
    *,
    unibus_nkey: str | None = None,
    default_timeout_s: float = 10.0,
    client: bool = True,
    env: dict[str, str] | None = None,
) -> Target:
    """The command's target from its flags, the environment and the context.
    `unibus_nkey` names the `UNIBUS_*` variable that outranks `NATS_NKEY` for this command
    (`UNIBUS_IDENTITY` for a peer, `UNIBUS_NKEY` for the shim), if any. A command that is
    not a client (`serve`) reads only its flags and `UNIBUS_*`: `NATS_*` and the selected
    context are what a natscli user set for their clients."""
    env = dict(os.environ) if env is None else env
    if not client:
        env = {name: value for name, value in env.items() if not name.startswith("NATS_")}
    context_name, context_source = _first(args, env, "context", (), "NATS_CONTEXT")
    context = load_context(context_name, context_source, env) if context_name is not None or client else None

    def pick(flag: str, variables: tuple[str, ...], key: str) -> Setting | None:
        value, source = _first(args, env, flag, variables)
        if value is None and context is not None and context.get(key):
            value, source = context.get(key), f"context {context.name!r} ({context.path})"
        return Setting(value, source) if value is not None else None

    url = pick("server", ("UNIBUS_NATS_URL", "NATS_URL"), "url")
    creds = pick("creds", ("UNIBUS_NATS_CREDS", "NATS_CREDS"), "creds")
    nkey = pick("nkey", (*((unibus_nkey,) if unibus_nkey else ()), "NATS_NKEY"), "nkey")
    timeout, timeout_source = _first(args, env, "timeout", (), "NATS_TIMEOUT")
    if isinstance(timeout, float):
        timeout_s = timeout
    elif timeout is not None:
        try:
            timeout_s = duration(timeout)
        except argparse.ArgumentTypeError as exc:
            raise CliError(f"{timeout_source}: {exc}", EXIT_USAGE) from None
    else:
        timeout_s = default_timeout_s
    return Target(url, creds, nkey, context, timeout_s)


def _first(
    args: argparse.Namespace, env: dict[str, str], flag: str, variables: tuple[str, ...], *more: str
) -> tuple[Any, str]:
    """The flag's value if given, else the first variable set (not empty), with its name."""
    if getattr(args, flag, None) is not None:
        return getattr(args, flag), f"--{flag}"
    for variable in (*variables, *more):
        if env.get(variable):
            return env[variable], variable
    return None, ""
