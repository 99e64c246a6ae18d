"""The one table from domain error to status code (app.STATUS): complete, as documented,
and never a 500 for a condition a layer named."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import unibus
from unibus.app import STATUS, status_of
from unibus.errors import DomainError
from unibus.storage import StoreUnavailable

DOCS = Path(__file__).parents[2] / "docs"


def _every_domain_error() -> set[type[DomainError]]:
    """Every DomainError class the package defines, found by importing all of it."""
    for module in pkgutil.walk_packages(unibus.__path__, "unibus."):
        # Not the entry point (it runs the CLI) nor the optional extras of unibus.testing.
        if not module.name.endswith("__main__") and not module.name.startswith("unibus.testing"):
            importlib.import_module(module.name)
    found: set[type[DomainError]] = set()
    pending = [DomainError]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__.startswith("unibus."):  # not a test's own subclass
                found.add(sub)
            pending.append(sub)
    return found


def _documented() -> dict[str, int]:
    """The table in docs/architecture.md, "Errors where they happen": name → status."""
    rows = re.findall(r"^\| `(\w+)` \| .* \| (\d{3}) \|$", (DOCS / "architecture.md").read_text(), re.M)
    return {name: int(code) for name, code in rows}


def test_every_domain_error_has_its_documented_status() -> None:
    documented = _documented()
    errors = _every_domain_error()
    assert errors, "no DomainError found"
    assert {cls.__name__ for cls in errors} == set(documented), "docs/architecture.md and the code disagree"
    for cls in errors:
        assert STATUS.get(cls) == documented[cls.__name__], cls.__name__


def test_the_documented_statuses_are_protocol_statuses_and_none_is_500() -> None:
    protocol = {int(c) for c in re.findall(r"^\| (\d{3}) \|", (DOCS / "protocol.md").read_text(), re.M)}
    assert set(STATUS.values()) <= protocol - {500}


@pytest.mark.parametrize("cls", sorted(_every_domain_error(), key=lambda cls: cls.__name__))
def test_an_error_is_answered_with_its_own_message_and_status(cls: type[DomainError]) -> None:
    error = cls.__new__(cls)
    Exception.__init__(error, "what the caller is told")
    assert status_of(error) == STATUS[cls]
    assert str(error) == "what the caller is told"


def test_a_subclass_takes_its_base_class_status_and_an_unmapped_error_is_500() -> None:
    class Narrower(StoreUnavailable):
        pass

    class Unmapped(DomainError):
        pass

    assert status_of(Narrower("x")) == 503
    assert status_of(Unmapped("x")) == 500
