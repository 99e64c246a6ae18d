"""`unibus keygen`: create the identity a peer signs with; its public key is the member id."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..identity import Identity
from .output import CliError, emit
from .session import add_identity_option, identity_path, load_identity


def register(commands: Any) -> None:
    keygen = commands.add_parser(
        "keygen", help="create an identity (nkey seed, 0600) and print its public key"
    )
    add_identity_option(keygen)
    keygen.add_argument("--force", action="store_true", help="replace an existing identity file")
    keygen.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(identity_path(args).value)
    if path.exists() and not args.force:
        existing = load_identity(args)
        raise CliError(f"{path} exists (public key {existing.public_key}); pass --force to replace it")
    identity = Identity.generate()
    identity.save(path)
    emit(args, {"public_key": identity.public_key, "identity": str(path)}, identity.public_key)
    return 0
