"""Commands that need an optional extra (pyproject.toml) check for it before importing it.

The base install is the client library and the peer commands; `unibus serve` and
`unibus shim` import their extras' modules only when run, so a peer's install never needs
them, and an operator who lacks one gets a single line naming what to install instead of an
ImportError's traceback. The extras' contents are read from this distribution's own
metadata, so pyproject.toml stays the one list of what each extra holds.
"""

from __future__ import annotations

import re
from importlib import metadata

from .output import EXIT_USAGE, CliError

DISTRIBUTION = "unibus-control-plane"

# Installed metadata spells each requirement as `name>=x; extra == "service"`.
_EXTRA_MARKER = re.compile(r"""\bextra\s*==\s*["']([\w.-]+)["']""")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def missing(extras: tuple[str, ...]) -> list[str]:
    """The distributions `extras` require that are not installed. None when unibus itself
    runs from a bare source tree (no metadata): there is nothing to compare against."""
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    absent = []
    for requirement in requirements:
        marker = _EXTRA_MARKER.search(requirement)
        name = _NAME.match(requirement)
        if marker is None or marker.group(1) not in extras or name is None:
            continue
        try:
            metadata.distribution(name.group(0))
        except metadata.PackageNotFoundError:
            absent.append(name.group(0))
    return sorted(set(absent))


def require_extras(command: str, *extras: str) -> None:
    """A usage error naming what to install when an extra `command` needs is missing."""
    absent = missing(extras)
    if absent:
        named = " and ".join(extras) + (" extras" if len(extras) > 1 else " extra")
        raise CliError(
            f"{command} needs the {named} ({', '.join(absent)} not installed): "
            f"pip install '{DISTRIBUTION}[{','.join(extras)}]'",
            EXIT_USAGE,
        )
