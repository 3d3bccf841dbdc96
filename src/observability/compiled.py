"""The request path, compiled: the modules every request runs through, built with mypyc.

Every request goes through the middleware, the request line, the masker, the log queue, the
RED metrics and the rolling windows. In CPython that is ~125k instructions a request on top
of a ~325k hello route; compiled by mypyc (the compiler mypy ships: the same typed source,
no second implementation) the same code costs about a third less (benchmarks/
profile_request_path.md). Nothing else changes: the source is the truth, the compiled modules
are a cache of it.

`build()` (run by `make install` and `make compile`) builds them into `_compiled/` beside
this file, with a manifest of the sources' hashes. At import, `activate()` (called by the
package's `__init__`) loads a compiled module only when the manifest matches the source on
disk and this interpreter: an edited source is never shadowed by a stale build, it simply runs
as Python until the next build. `OBSERVABILITY_PURE_PYTHON=1` turns the compiled modules off.
`status()` says which mode the process runs in.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["MODULES", "activate", "build", "status"]

# The request path, and nothing else. Each module here must stay compatible with mypyc: no
# class-body aliases, no bare __new__, no interpreted subclass of its classes, and no coroutine
# (`async def`): mypyc drops the traceback of an exception thrown into one (an endpoint's
# failure coming back from the thread pool), so the ASGI coroutines stay in Python.
MODULES = (
    "observability.context",
    "observability.logging.levels",
    "observability.logging.pipeline",
    "observability.logging.queue",
    "observability.logging.request_log",
    "observability.masking.engine",
    "observability.masking.masker",
    "observability.metrics.prometheus",
    "observability.metrics.sketch",
    "observability.metrics.windows",
    "observability.request_record",
)
PURE_ENV = "OBSERVABILITY_PURE_PYTHON"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the directory holding `observability`
_OUT = Path(__file__).resolve().parent / "_compiled"
_MANIFEST = "manifest.json"

_status = "not activated"


def _source(module: str) -> Path:
    return _PACKAGE_ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _fingerprint() -> dict[str, object]:
    """What a build is valid for: this interpreter's ABI and each source's hash."""
    return {
        "abi": sysconfig.get_config_var("SOABI"),
        "sources": {m: hashlib.sha256(_source(m).read_bytes()).hexdigest() for m in MODULES},
    }


class _CompiledFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled module files by their exact names; every other import passes on."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, file)
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def activate() -> str:
    """Load the compiled modules from here on, when a valid build exists; returns `status()`."""
    global _status
    if _status != "not activated":
        return _status
    if os.environ.get(PURE_ENV, "").strip().lower() in ("1", "true", "yes"):
        _status = f"pure Python ({PURE_ENV} is set)"
        return _status
    try:
        manifest = json.loads((_OUT / _MANIFEST).read_text())
    except (OSError, ValueError):
        _status = "pure Python (not built: make compile)"
        return _status
    if manifest.get("fingerprint") != _fingerprint():
        _status = "pure Python (the build is stale or for another interpreter: rebuild it)"
        return _status
    files = {name: str(_OUT / rel) for name, rel in manifest["files"].items()}
    if any(name in sys.modules for name in MODULES):
        _status = "pure Python (imported before activation)"
        return _status
    sys.meta_path.insert(0, _CompiledFinder(files))
    _status = "compiled"
    return _status


def status() -> str:
    """ "compiled", or "pure Python (why)"."""
    return _status


def build(out: Path = _OUT) -> Path:
    """Compile MODULES with mypyc into `out` (replaced whole, only once the build succeeded)."""
    from mypyc.build import mypycify  # the build needs mypy and a C compiler; running does not
    from setuptools import Distribution  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory(prefix="observability-mypyc-") as tmp:
        cwd = os.getcwd()
        # mypy reads the configuration of its working directory; the build wants none.
        os.chdir(tmp)
        try:
            extensions = mypycify(
                [str(_source(m)) for m in MODULES],
                opt_level="3",
                target_dir=str(Path(tmp, "c")),
                group_name="observability_request_path",
            )
            dist = Distribution({"name": "observability-compiled", "ext_modules": extensions})
            command = dist.get_command_obj("build_ext")
            command.build_lib = str(Path(tmp, "lib"))
            command.build_temp = str(Path(tmp, "obj"))
            dist.run_command("build_ext")
        finally:
            os.chdir(cwd)
        lib = Path(tmp, "lib")
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        files = {}  # module name -> file, the group's shared library included
        for so in sorted(lib.rglob("*" + suffix)):
            relative = so.relative_to(lib).as_posix()
            files[relative.removesuffix(suffix).replace("/", ".")] = relative
        missing = [m for m in MODULES if m not in files]
        if missing:
            raise RuntimeError(f"mypyc built no module for {missing}")
        manifest = {"fingerprint": _fingerprint(), "files": files}
        (lib / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        staged = out.with_name(out.name + ".new")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(lib, staged)
        shutil.rmtree(out, ignore_errors=True)
        staged.rename(out)
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--sources"]:  # for make: the files a build depends on
        print(" ".join(os.path.relpath(_source(m)) for m in MODULES))
    else:
        print(f"compiled request path: {build()}")
