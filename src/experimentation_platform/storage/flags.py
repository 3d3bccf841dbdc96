"""Feature flags: persistence and cached evaluation configuration."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from experimentation_platform.domain.bucketing import new_salt
from experimentation_platform.domain.flags import FlagConfig
from experimentation_platform.errors import Conflict, NotFound
from experimentation_platform.storage.cache import ConfigCache
from experimentation_platform.storage.db import Database
from experimentation_platform.storage.models import Flag

__all__ = ["FlagStore"]

ALL_FLAGS = "flags:all"


def _to_config(row: Flag) -> FlagConfig:
    return FlagConfig.from_dict(
        {
            "key": row.key,
            "enabled": row.enabled,
            "rollout_percentage": row.rollout_percentage,
            "rules": row.rules,
            "salt": row.salt,
            "version": row.version,
        }
    )


class FlagStore:
    def __init__(self, db: Database, cache: ConfigCache) -> None:
        self.db = db
        self.cache = cache
        self._memo: tuple[dict[str, Any], dict[str, FlagConfig]] | None = None

    def create(self, data: Mapping[str, Any]) -> Flag:
        row = Flag(
            key=data["key"],
            description=data.get("description", ""),
            enabled=bool(data.get("enabled", False)),
            rollout_percentage=float(data.get("rollout_percentage", 0.0)),
            rules=list(data.get("rules", [])),
            salt=new_salt(),
        )
        try:
            with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict(f"a flag with key '{data['key']}' exists", field="key") from None
        self.cache.delete(ALL_FLAGS)
        return row

    def update(self, key: str, changes: Mapping[str, Any]) -> Flag:
        with self.db.session() as session:
            row = session.scalar(select(Flag).where(Flag.key == key).with_for_update())
            if row is None:
                raise NotFound(f"flag '{key}' not found", field="key")
            for name, value in changes.items():
                setattr(row, name, value)
            row.version += 1
            row.updated_at = datetime.now(UTC)
        self.cache.delete(ALL_FLAGS)
        return row

    def get(self, key: str) -> Flag:
        with self.db.session() as session:
            row = session.scalar(select(Flag).where(Flag.key == key))
        if row is None:
            raise NotFound(f"flag '{key}' not found", field="key")
        return row

    def list(self) -> list[Flag]:
        with self.db.session() as session:
            return list(session.scalars(select(Flag).order_by(Flag.key)))

    def configs(self) -> dict[str, FlagConfig]:
        """Every flag's configuration, through the cache (one entry for all flags: batch
        evaluation needs them all, and flags are few)."""
        cached = self.cache.get(ALL_FLAGS)
        if cached is None:
            return self.load_configs()
        return self._parsed(cached)

    def configs_after_fast_path(self) -> dict[str, FlagConfig]:
        """After `configs_without_io` said None: do not ask an in-process cache twice."""
        return self.load_configs() if self.cache.local else self.configs()

    def load_configs(self) -> dict[str, FlagConfig]:
        configs = {row.key: _to_config(row) for row in self.list()}
        self.cache.set(ALL_FLAGS, {"flags": [c.to_dict() for c in configs.values()]})
        return configs

    def configs_without_io(self) -> dict[str, FlagConfig] | None:
        """Every flag's configuration when cached in-process; None when only I/O can say."""
        if not self.cache.local:
            return None
        cached = self.cache.get(ALL_FLAGS)
        if cached is None:
            return None
        return self._parsed(cached)

    def _parsed(self, cached: dict[str, Any]) -> dict[str, FlagConfig]:
        # Parse once per cached entry: the in-process cache returns the same object until
        # it expires or a change deletes it.
        memo = self._memo
        if memo is not None and memo[0] is cached:
            return memo[1]
        configs = {f["key"]: FlagConfig.from_dict(f) for f in cached["flags"]}
        self._memo = (cached, configs)
        return configs
