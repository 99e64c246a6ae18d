"""The cluster's route password: which nats-server may join the cluster as a node.

nats-server admits a route (a node joining) by the cluster block's own `authorization`,
a user and a password, and a node presents them in the URLs of its routes. Without it any
nats-server that reaches the route port joins with accounts of its own named `UNIBUS` and
`SYS`, and then reads every frame and request and writes room rows (issue 20).
`unibus boundary init` makes the password once, beside the seeds, and writes it into
`boundary.env` as `UNIBUS_ROUTE_PASSWORD`, next to the public keys: the nodes get it
through the same secret as the keys (docs/security.md).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from .keys import write_secret

ROUTE_USER = "unibus-route"
PASSWORD_FILE = "route.password"
PASSWORD_VARIABLE = "UNIBUS_ROUTE_PASSWORD"


def ensure_route_password(directory: str | Path) -> str:
    """The route password kept in `directory`, made (and never replaced) on first use.
    Hex after a letter: nats-server parses a variable's value as configuration, and the
    password also goes into URLs, so it must read as a plain word in both."""
    path = Path(directory) / PASSWORD_FILE
    if not path.exists():
        write_secret(path, "r" + secrets.token_hex(32))
    return path.read_text().strip()
