"""The boundary's keys: one nkey per static role, and the callout's issuer.

Only public keys reach nats-server's configuration; seeds stay with the process that uses
them. `unibus boundary init DIR` (and the embedded default, under its data directory) writes
one seed file per role, 0600, and never replaces one that exists, so restarting keeps
every connection's identity and every issued JWT's issuer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
import nkeys

from ..config import Config
from ..identity import Identity
from ..wire.names import ROLES


class MissingKeys(FileNotFoundError):
    """A keys directory without the seeds a process needs: a setting to fix, not a crash."""


SERVICE_ROLES = ("service", "responder", "callout", "system")
"""What a control-plane instance needs; the shim's seed belongs to the shim alone."""
ISSUER_FILE = "issuer.nk"


@dataclass(frozen=True)
class BoundaryKeys:
    issuer: nkeys.KeyPair
    """Account key (`SA…`) that signs every authorization response and user JWT."""
    users: dict[str, Identity]

    @property
    def issuer_public(self) -> str:
        return str(self.issuer.public_key.decode())

    def public(self) -> dict[str, str]:
        """`ISSUER`, `SERVICE`, … → public key: what nats-server's configuration needs."""
        return {"ISSUER": self.issuer_public} | {r.upper(): u.public_key for r, u in self.users.items()}

    @classmethod
    def load(cls, directory: str | Path) -> BoundaryKeys:
        root = Path(directory)
        needed = (ISSUER_FILE, *(f"{r}.nk" for r in SERVICE_ROLES))
        missing = [name for name in needed if not (root / name).exists()]
        if missing:
            raise MissingKeys(
                f"{root}: no {', '.join(missing)} (create them with `unibus boundary init {root}`)"
            )
        issuer = nkeys.from_seed(bytearray((root / ISSUER_FILE).read_bytes().strip()))
        if not issuer.public_key.startswith(b"A"):
            raise ValueError(f"{root / ISSUER_FILE}: not an account seed (SA…)")
        present = [role for role in ROLES if (root / f"{role}.nk").exists()]
        return cls(issuer, {role: Identity.load(root / f"{role}.nk") for role in present})

    @classmethod
    def ensure(cls, directory: str | Path) -> BoundaryKeys:
        """Load the keys in `directory`, first creating any that are missing."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        issuer_path = root / ISSUER_FILE
        if not issuer_path.exists():
            raw = nacl.signing.SigningKey.generate().encode()
            write_secret(issuer_path, bytes(nkeys.encode_seed(raw, nkeys.PREFIX_BYTE_ACCOUNT)).decode())
        for role in ROLES:
            path = root / f"{role}.nk"
            if not path.exists():
                Identity.generate().save(path)
        return cls.load(root)


def write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


def boundary_keys(config: Config) -> BoundaryKeys | None:
    """The boundary's keys: from `keys_dir`; made under the data directory for the
    embedded server; none for an external NATS without `keys_dir`."""
    if config.keys_dir is not None:
        return BoundaryKeys.load(config.keys_dir)
    if config.nats_url is None:
        return BoundaryKeys.ensure(Path(config.data_dir) / "keys")
    return None
