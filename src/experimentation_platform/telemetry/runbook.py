"""Where the runbook (docs/runbook.md) is, in a wheel and in a source checkout alike.

A wheel carries docs/ inside this package (pyproject.toml force-includes it beside this module);
an editable install (`pip install -e .`) runs from the checkout, where docs/ is three levels up.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["runbook_path"]

_HERE = Path(__file__).resolve().parent


def runbook_path() -> Path:
    """The runbook file this installation serves."""
    packaged = _HERE / "docs" / "runbook.md"
    if packaged.is_file():
        return packaged
    return _HERE.parents[2] / "docs" / "runbook.md"
