"""The house rules of DESIGN.md, read from the code's imports.

- The toolkit is usable by any ASGI app: it never imports the platform.
- Inside the toolkit, imports only point down a fixed order of layers (vocabulary, request
  path and logs, signals, judgements, presentation, assembly); every toolkit module is placed
  in one, so a new module takes that decision.
- Only the CLI imports the `commands/` package.
- No `importlib` (or `__import__`) loading of the project's own modules: every arrow is an
  import statement a reader (and a tool) can follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
TOOLKIT = SRC / "observability"
PLATFORM = SRC / "experimentation_platform"

# Lowest first. A module may import its own layer and the layers below, never above.
LAYERS: tuple[tuple[str, ...], ...] = (
    # vocabulary: names, settings and helpers every part may use
    ("severity", "context", "settings", "masking", "metrics.names", "terminal", "compiled"),
    # the request path and the logs
    ("asgi", "request_record", "limits", "logging", "logsearch", "runmarker"),
    # signals: metrics, errors, log shipping, readiness
    ("metrics", "errors", "cloud", "readiness"),
    # judgements over the signals: queries, rules, dashboards, evidence, their store
    ("query", "alerting", "dashboards", "incident", "store", "migrations", "fleet", "logaudit"),
    # configuration, presentation and defaults
    ("config", "web", "access", "defaults"),
    # assembly: the one entry point
    ("core", "wiring", "__init__"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) of every import that runs (not those under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for item in node.body for child in ast.walk(item))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:  # `from observability import config` names a module
                yield f"{node.module}.{alias.name}", node.lineno


def _layer(module: str) -> int | None:
    """The layer of a toolkit module (`observability.x.y`), by its longest listed prefix."""
    rest = module.removeprefix("observability").lstrip(".") or "__init__"
    matches = [
        (len(name), index)
        for index, names in enumerate(LAYERS)
        for name in names
        if rest == name or rest.startswith(name + ".")
    ]
    return max(matches)[1] if matches else None


def _toolkit_files() -> list[Path]:
    return sorted(TOOLKIT.rglob("*.py"))


def test_observability_never_imports_the_platform() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {name}"
        for path in _toolkit_files()
        for name, line in _imports(path)
        if name.split(".")[0] == "experimentation_platform"
    ]
    assert offenders == []


def test_every_toolkit_module_has_a_layer() -> None:
    unplaced = [
        _module_name(path) for path in _toolkit_files() if _layer(_module_name(path)) is None
    ]
    assert unplaced == [], "place these modules in LAYERS (tests/test_architecture.py)"


def test_toolkit_imports_only_point_down() -> None:
    upward = []
    for path in _toolkit_files():
        own = _layer(_module_name(path))
        for name, line in _imports(path):
            if name.split(".")[0] != "observability":
                continue
            target = _layer(name)
            if own is not None and target is not None and target > own:
                upward.append(f"{path.relative_to(SRC)}:{line} imports {name} (layer {target})")
    assert upward == []


def test_only_the_cli_imports_the_commands() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {name}"
        for path in sorted(SRC.rglob("*.py"))
        if path != PLATFORM / "cli.py" and PLATFORM / "commands" not in path.parents
        for name, line in _imports(path)
        if name.startswith("experimentation_platform.commands")
    ]
    assert offenders == []


# Calls that load a module from a name or a file (importlib.util.find_spec only asks whether a
# third-party package is installed, and stays allowed).
_LOADERS = frozenset(
    {"import_module", "__import__", "spec_from_file_location", "module_from_spec", "reload"}
)


# The compiled request path's finder: it chooses which file backs an import statement that is
# still written out in the code (the same module, built by mypyc), and loads nothing by name.
_FILE_CHOOSERS = frozenset({"observability/compiled.py"})


def test_no_module_loads_our_own_modules_by_name() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).as_posix() in _FILE_CHOOSERS:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                if called.rpartition(".")[2] in _LOADERS:
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {called}")
    assert offenders == []


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a vocabulary module importing the assembly is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from observability.core import Observability\n")
    [(name, _line)] = [item for item in _imports(bad) if item[0] == "observability.core"]
    assert _layer("observability.severity") == 0
    assert _layer(name) == len(LAYERS) - 1
    assert _layer("observability.metrics.names") == 0  # the longest prefix wins
    assert _layer("observability.metrics.windows") == 2
