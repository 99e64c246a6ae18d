"""The import rules of docs/architecture.md, checked on the source: the ground floor, who
may stand on what, no cycle between packages, one place for each protocol name and each
JetStream code."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import unibus

PACKAGE = Path(unibus.__file__).parent

ALLOWED = {
    # package: the unibus packages (or top-level modules) it may import
    "wire": {"identity"},
    "identity": set(),
    "config": {"wire"},
    "client": {"wire", "identity"},
    "shim": {"wire", "identity", "config", "metrics"},
    "metrics": {"config"},
    "storage": {"wire", "errors", "readindex"},
    "readindex": {"wire"},
    "streams": {"wire", "errors", "storage"},
    "history": {"wire", "errors", "storage", "readindex", "streams"},
}
"""Floors that must stay low; the rest may import anything that makes no cycle."""

PROTOCOL_STRINGS = {
    "$UNIBUS.CTL",
    "unibus-control-plane",
    "unibus.room",
    "UNIBUS_ROOMS",
    "UNIBUS-NONCES",
    "$SYS.REQ.USER.AUTH",
    "Nats-Service-Error",
    "Nats-Service-Error-Code",
    "$JS.API",
}
"""Spelled once, in wire/ (or taken from nats.py there)."""
SAME_SPELLING = {
    ("unibus.cli.extras", "unibus-control-plane"): "the pip distribution, not the service's name",
    ("unibus.streams", "unibus.room"): "a stream metadata key, not the room subject prefix",
}
JETSTREAM_CODES = range(10001, 10300)


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("unibus", *parts)), path


def _unit(module: str) -> str:
    """The package (or top-level module) a module belongs to: `storage`, `app`, …"""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "unibus"


def _imports(module: str, path: Path) -> set[str]:
    """Every unibus module `path` imports, lazily or not."""
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("unibus"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("unibus"):
                continue
            found.add(target)
            if not node.module or target in {m for m, _ in _modules()}:
                # `from . import x` / `from .pkg import mod` name modules too
                found.update(f"{target}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    known = {module for module, _ in _modules()}
    graph: dict[str, set[str]] = {}
    for module, path in _modules():
        unit = _unit(module)
        targets = {_unit(t) for t in _imports(module, path) if t in known}
        graph.setdefault(unit, set()).update(targets - {unit, "unibus"})
    return graph


def test_low_floors_import_only_what_the_architecture_allows() -> None:
    graph = _graph()
    wrong = {unit: graph[unit] - allowed for unit, allowed in ALLOWED.items() if graph[unit] - allowed}
    assert not wrong, f"imports docs/architecture.md does not allow: {wrong}"


def test_history_is_reached_through_its_entry_only() -> None:
    """The frame cache, the reader and the rest of history/ are its own business: outside
    the package only `unibus.history` (its `Backlog`) is imported."""
    known = {module for module, _ in _modules()}
    reaching_in = sorted(
        f"{module} imports {target}"
        for module, path in _modules()
        if _unit(module) != "history"
        for target in _imports(module, path)
        if target.startswith("unibus.history.") and target in known
    )
    assert not reaching_in, reaching_in


def test_no_cycle_between_packages() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(unit: str, path: list[str]) -> None:
        if unit in path:
            pytest.fail("package cycle: " + " -> ".join([*path[path.index(unit) :], unit]))
        if unit in done:
            return
        for target in sorted(graph.get(unit, ())):
            visit(target, [*path, unit])
        done.add(unit)

    for unit in sorted(graph):
        visit(unit, [])


@pytest.mark.parametrize(
    ("entry", "allowed"),
    [
        ("unibus.client", {"client", "wire", "identity"}),
        ("unibus.shim", {"shim", "wire", "identity", "config", "metrics"}),
    ],
)
def test_importing_a_peer_facing_package_loads_no_server_module(entry: str, allowed: set[str]) -> None:
    """In a fresh interpreter, as a peer or the shim's own process would load it."""
    code = f"import sys, {entry}; print('\\n'.join(m for m in sys.modules if m.startswith('unibus.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    server = sorted(m for m in loaded.split() if _unit(m) not in allowed)
    assert not server, f"import {entry} loads {server}"


def _constants(tree: ast.AST) -> Iterator[ast.Constant]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            yield node


def test_protocol_names_and_jetstream_codes_live_in_wire_only() -> None:
    found = []
    for module, path in _modules():
        if _unit(module) == "wire":
            continue
        for node in _constants(ast.parse(path.read_text())):
            value = node.value
            if isinstance(value, str) and value in PROTOCOL_STRINGS and (module, value) not in SAME_SPELLING:
                found.append(f"{module}:{node.lineno} {value!r}")
            if isinstance(value, int) and not isinstance(value, bool) and value in JETSTREAM_CODES:
                found.append(f"{module}:{node.lineno} JetStream code {value}")
    assert not found, "spelled outside wire/: " + ", ".join(found)
