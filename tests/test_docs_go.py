"""The Go in docs/testing.md compiles: each ```go block is type-checked with `go vet` in
GOPATH mode against Debian's packages and the user's GOPATH.

testcontainers-go is not packaged in Debian, so where its packages (or any other import)
are in no GOPATH the check skips and names them, in CI too; a missing Go toolchain or
Debian nats.go fails under CI as for the other Go tests (harness.golang).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import golang

TESTING_MD = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def go_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```go\n(.*?)^```$", markdown, re.M | re.S)


SNIPPETS = go_blocks(TESTING_MD.read_text())


def test_testing_md_has_its_go_example() -> None:
    assert any("package unibus_test" in source for source in SNIPPETS)


@pytest.mark.parametrize("source", SNIPPETS, ids=lambda s: s.splitlines()[0].removeprefix("// "))
def test_the_go_snippet_compiles(source: str, tmp_path: Path) -> None:
    go = golang.toolchain()
    scratch = tmp_path / "gopath"
    absent = golang.missing(golang.imports(source), scratch)
    if absent:
        roots = ", ".join(str(p) for p in golang.gopath(scratch))
        pytest.skip(
            f"docs/testing.md's Go snippet imports {', '.join(absent)}, in no GOPATH here ({roots}); "
            "testcontainers-go is not packaged in Debian"
        )
    package = scratch / "src" / "unibusdocs"
    package.mkdir(parents=True)
    (package / "unibus_test.go").write_text(source)
    result = golang.run_go(go, ["vet", "."], package, scratch)
    assert result.returncode == 0, result.stderr
