"""Log levels: one global level plus per-logger overrides, changeable at runtime.

The same policy filters structlog events (a processor) and stdlib loggers (their levels are
set on the `logging` module), so `EP_LOG_LEVELS="sqlalchemy.engine=WARNING"` means the same
thing for every source.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

__all__ = ["LEVELS", "LevelPolicy", "parse_levels"]

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def parse_levels(spec: str) -> dict[str, int]:
    """Parse "a.b=WARNING,c=ERROR"; raise ValueError naming the bad part."""
    result: dict[str, int] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, level = part.partition("=")
        name, level = name.strip(), level.strip().upper()
        if not sep or not name or level not in LEVELS:
            raise ValueError(
                f"bad logger level '{part}': expected name=LEVEL with LEVEL in " + ", ".join(LEVELS)
            )
        result[name] = LEVELS[level]
    return result


class LevelPolicy:
    """Thread-safe global level and per-logger levels (the most specific dotted prefix wins)."""

    def __init__(self, level: int = logging.INFO, levels: Mapping[str, int] | None = None) -> None:
        self._lock = threading.Lock()
        self.level = level
        self.levels: dict[str, int] = dict(levels or {})
        self._cache: dict[str, int] = {}
        self._touched: set[str] = set()

    def threshold(self, logger_name: str | None) -> int:
        if not logger_name:
            return self.level
        found = self._cache.get(logger_name)
        if found is None:
            found = self.level
            name = logger_name
            while name:
                if name in self.levels:
                    found = self.levels[name]
                    break
                name = name.rpartition(".")[0]
            if len(self._cache) < 10_000:
                self._cache[logger_name] = found
        return found

    def set(self, level: int | None = None, levels: Mapping[str, int] | None = None) -> None:
        with self._lock:
            if level is not None:
                self.level = level
            if levels is not None:
                self.levels.update(levels)
            self._cache = {}
        self.apply_to_stdlib()

    def reset_logger(self, name: str) -> None:
        with self._lock:
            self.levels.pop(name, None)
            self._cache = {}
        self.apply_to_stdlib()

    def apply_to_stdlib(self) -> None:
        logging.getLogger().setLevel(self.level)
        for name in self._touched - set(self.levels):
            logging.getLogger(name).setLevel(logging.NOTSET)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        self._touched = set(self.levels)

    def as_dict(self) -> dict[str, object]:
        names = {v: k for k, v in LEVELS.items()}
        return {
            "level": names.get(self.level, str(self.level)),
            "levels": {k: names.get(v, str(v)) for k, v in sorted(self.levels.items())},
        }
