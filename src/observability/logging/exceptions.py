"""Exceptions as structured fields (type, message, frames, cause) instead of a text blob."""

from __future__ import annotations

import traceback
from typing import Any

__all__ = ["structure_exception"]

MAX_FRAMES = 40  # the innermost frames; a recursion error would otherwise fill a line
MAX_CHAIN = 5


def _frames(exc: BaseException) -> list[dict[str, Any]]:
    frames = traceback.extract_tb(exc.__traceback__)
    return [
        {"file": f.filename, "line": f.lineno, "function": f.name, "code": f.line or ""}
        for f in frames[-MAX_FRAMES:]
    ]


def structure_exception(exc: BaseException) -> dict[str, Any]:
    """{"type", "message", "module", "frames": [...], "cause": {...}} with the chain followed."""
    root: dict[str, Any] = {}
    node: dict[str, Any] = root
    current: BaseException | None = exc
    seen: set[int] = set()
    depth = 0
    while current is not None and id(current) not in seen and depth < MAX_CHAIN:
        seen.add(id(current))
        node.update(
            type=type(current).__qualname__,
            module=type(current).__module__,
            message=str(current),
            frames=_frames(current),
        )
        following = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
        if following is not None and id(following) not in seen and depth + 1 < MAX_CHAIN:
            node["cause"] = {}
            node = node["cause"]
        current = following
        depth += 1
    return root
