"""The toolkit is usable by any ASGI app: it never imports the platform."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_observability_never_imports_the_platform() -> None:
    offenders = []
    for path in (SRC / "observability").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path}: {n}" for n in names if n.split(".")[0] == "experimentation_platform"
            ]
    assert offenders == []
