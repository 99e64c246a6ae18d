"""`unibus boundary`: the trust boundary's keys and nats-server configuration.

`init DIR` creates the seeds and the cluster's route password (keeping any that exist) and
`DIR/boundary.env`, what nats-server's environment needs: the public keys as the
`UNIBUS_*_KEY` variables `deploy/nats/boundary.conf` reads, and the route password
`deploy/nats/cluster.conf` reads (callout/routes.py). It holds a secret, so it is written
0600 like the seeds. `config` prints the boundary block, with the keys filled in when
`--keys` names a directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..callout import serverconf
from ..callout.keys import BoundaryKeys, write_secret
from ..callout.routes import PASSWORD_VARIABLE, ensure_route_password
from ..wire.names import CONTROL_PREFIX
from .output import emit


def register(commands: Any) -> None:
    boundary = commands.add_parser("boundary", help="keys and nats-server config of the trust boundary")
    actions = boundary.add_subparsers(dest="action", required=True)
    init = actions.add_parser("init", help="create the seeds in DIR (kept if present) and DIR/boundary.env")
    init.add_argument("dir", help="directory for the seeds (0600 files)")
    init.set_defaults(func=run_init)
    config = actions.add_parser("config", help="print the nats-server accounts/authorization block")
    config.add_argument("--keys", help="fill in the public keys of this directory's seeds")
    config.add_argument("--prefix", default=CONTROL_PREFIX, help="control subject prefix")
    config.set_defaults(func=run_config)


def env_lines(keys: BoundaryKeys) -> str:
    return "".join(f"UNIBUS_{role}_KEY={key}\n" for role, key in keys.public().items())


def run_init(args: argparse.Namespace) -> int:
    keys = BoundaryKeys.ensure(args.dir)
    password = ensure_route_password(args.dir)
    env = Path(args.dir) / "boundary.env"
    env.unlink(missing_ok=True)
    write_secret(env, f"{env_lines(keys)}{PASSWORD_VARIABLE}={password}")
    made = {"dir": args.dir, "env_file": str(env), "public_keys": keys.public()}
    # Plain NAME=value lines (compose's env_file and Kustomize's envs refuse `export`):
    # a shell exports them with `set -a`.
    start = f"set -a && . {env} && set +a && nats-server -c deploy/nats/standalone.conf"
    human = (
        f"seeds and route password in {args.dir}; for nats-server: {env} (a secret); public keys:\n"
        f"{env_lines(keys)}nats-server reads them: {start}"
    )
    emit(args, made, human)
    return 0


def run_config(args: argparse.Namespace) -> int:
    keys = BoundaryKeys.load(args.keys).public() if args.keys else None
    config = serverconf.render(keys, args.prefix)
    emit(args, {"config": config}, config.rstrip("\n"))
    return 0
