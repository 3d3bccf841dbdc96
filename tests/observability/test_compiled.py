"""The compiled request path (observability/compiled.py): built by `make install`, loaded only
when it matches the sources, switched off by OBSERVABILITY_PURE_PYTHON.

The behaviour of the compiled modules is the behaviour the rest of the suite asserts: `make
test` runs the whole suite on the compiled build, then the request path's tests once more as
plain Python (the Makefile's PURE_TESTS)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import observability
from observability import compiled

PACKAGE = Path(observability.__file__).resolve().parent
BUILD = PACKAGE / "_compiled"
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def _built() -> None:
    """The build exists, or this test cannot run; in CI (`make test` builds it) that is a
    failure, never a skip."""
    if (BUILD / "manifest.json").exists():
        return
    if os.environ.get("CI"):
        pytest.fail(
            "no compiled request path: `make install` builds it (observability/compiled.py)"
        )
    pytest.skip("the request path is not compiled here (make compile)")


def _probe(src: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """Import the request path in a fresh interpreter from `src`: its status and module files."""
    code = (
        "import json, observability, observability.request_record\n"
        "import observability.logging.request_log\n"
        "from observability import compiled\n"
        "print(json.dumps({'status': compiled.status(),"
        " 'record': observability.request_record.__file__,"
        " 'request_log': observability.logging.request_log.__file__}))\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    environment.update(env or {})
    environment["PYTHONPATH"] = str(src)
    out = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_this_process_runs_the_compiled_request_path_when_it_is_built() -> None:
    _built()
    if os.environ.get(compiled.PURE_ENV):
        assert compiled.status().startswith("pure Python")
        pytest.skip("this run is the pure-Python pass (OBSERVABILITY_PURE_PYTHON)")
    assert compiled.status() == "compiled"
    for name in compiled.MODULES:
        module = sys.modules.get(name) or __import__(name, fromlist=["_"])
        assert module.__file__.endswith(SUFFIX), name


def test_the_switch_and_a_stale_build_fall_back_to_the_python_source(tmp_path: Path) -> None:
    _built()
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "observability", ignore=shutil.ignore_patterns("__pycache__"))

    fresh = _probe(src)
    assert fresh["status"] == "compiled"
    assert fresh["record"].endswith(SUFFIX)
    assert fresh["request_log"].endswith(SUFFIX)

    switched = _probe(src, {compiled.PURE_ENV: "1"})
    assert switched["status"].startswith("pure Python (OBSERVABILITY_PURE_PYTHON")
    assert switched["record"].endswith("request_record.py")

    # One edited source makes the whole build stale: no module of it may shadow the edit.
    with (src / "observability" / "logging" / "request_log.py").open("a") as source:
        source.write("\nEDITED = True\n")
    stale = _probe(src)
    assert "stale" in stale["status"]
    assert stale["record"].endswith("request_record.py")
    assert stale["request_log"].endswith("request_log.py")

    shutil.rmtree(src / "observability" / "_compiled")
    absent = _probe(src)
    assert absent["status"].startswith("pure Python (not built")
    assert absent["record"].endswith("request_record.py")


def test_the_manifest_names_every_compiled_module_and_its_source_hash() -> None:
    _built()
    manifest = json.loads((BUILD / "manifest.json").read_text())
    assert set(compiled.MODULES) <= set(manifest["files"])
    assert set(manifest["fingerprint"]["sources"]) == set(compiled.MODULES)
    for name in compiled.MODULES:
        assert (BUILD / manifest["files"][name]).is_file()


def test_no_compiled_module_holds_a_coroutine() -> None:
    """mypyc's coroutines drop the traceback of an exception thrown into them: an endpoint's
    failure would reach the error line without its frames. The ASGI coroutines stay in Python
    (asgi.py, metrics/endpoint.py); the compiled modules hold none."""
    found = []
    for name in compiled.MODULES:
        path = PACKAGE.parent.joinpath(*name.split(".")).with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.AsyncFunctionDef | ast.Await):
                found.append(f"{name}:{node.lineno}")
    assert found == []
