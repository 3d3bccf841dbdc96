"""Experiments: persistence, cached configuration and exposure recording."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from experimentation_platform.domain.bucketing import new_salt
from experimentation_platform.domain.experiments import (
    ExperimentConfig,
    InvalidTransition,
    check_transition,
    validate_variants,
)
from experimentation_platform.errors import Conflict, InvalidInput, InvalidState, NotFound
from experimentation_platform.storage.cache import ConfigCache
from experimentation_platform.storage.db import Database
from experimentation_platform.storage.models import Experiment, Exposure

__all__ = ["ExperimentStore"]

_MISSING = {"missing": True}  # negative cache entry: unknown keys do not hit the database


def _cache_key(key: str) -> str:
    return f"experiment:{key}"


class ExperimentStore:
    # Users already exposed, remembered in-process so that repeated assignments skip the
    # insert; bounded, and only an optimisation: the unique constraint is the real guard.
    EXPOSED_MEMORY = 200_000

    def __init__(self, db: Database, cache: ConfigCache) -> None:
        self.db = db
        self.cache = cache
        self._exposed: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._exposed_lock = threading.Lock()
        self._parse_memo: dict[str, tuple[dict[str, Any], ExperimentConfig]] = {}

    # --- configuration -------------------------------------------------------------------
    def create(self, data: Mapping[str, Any]) -> Experiment:
        try:
            validate_variants(data["variants"])
        except ValueError as exc:
            raise InvalidInput(str(exc), field="variants") from None
        row = Experiment(
            key=data["key"],
            name=data["name"],
            description=data.get("description", ""),
            status="draft",
            salt=new_salt(),
            variants=list(data["variants"]),
            targeting=list(data.get("targeting", [])),
            traffic_allocation=float(data.get("traffic_allocation", 100.0)),
        )
        try:
            with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict(f"an experiment with key '{data['key']}' exists", field="key") from None
        self.cache.delete(_cache_key(row.key))
        return row

    def get(self, key: str) -> Experiment:
        with self.db.session() as session:
            row = session.scalar(select(Experiment).where(Experiment.key == key))
        if row is None:
            raise NotFound(f"experiment '{key}' not found", field="key")
        return row

    def list(self, offset: int, limit: int, status: str | None) -> tuple[list[Experiment], int]:
        query = select(Experiment)
        count = select(func.count(Experiment.id))
        if status:
            query = query.where(Experiment.status == status)
            count = count.where(Experiment.status == status)
        with self.db.session() as session:
            total = int(session.scalar(count) or 0)
            rows = list(session.scalars(query.order_by(Experiment.id).offset(offset).limit(limit)))
        return rows, total

    def update(self, key: str, changes: Mapping[str, Any]) -> Experiment:
        if "variants" in changes:
            try:
                validate_variants(changes["variants"])
            except ValueError as exc:
                raise InvalidInput(str(exc), field="variants") from None
        with self.db.session() as session:
            row = session.scalar(select(Experiment).where(Experiment.key == key).with_for_update())
            if row is None:
                raise NotFound(f"experiment '{key}' not found", field="key")
            if row.status != "draft":
                raise InvalidState(
                    f"experiment '{key}' is {row.status}; only draft experiments can be edited"
                )
            for name, value in changes.items():
                setattr(row, name, value)
            row.version += 1
            row.updated_at = datetime.now(UTC)
        self.cache.delete(_cache_key(key))
        return row

    def transition(self, key: str, action: str) -> Experiment:
        with self.db.session() as session:
            row = session.scalar(select(Experiment).where(Experiment.key == key).with_for_update())
            if row is None:
                raise NotFound(f"experiment '{key}' not found", field="key")
            try:
                row.status = check_transition(action, row.status)
            except InvalidTransition as exc:
                raise InvalidState(str(exc)) from None
            now = datetime.now(UTC)
            if action == "start" and row.started_at is None:
                row.started_at = now
            if action == "complete":
                row.completed_at = now
            row.version += 1
            row.updated_at = now
        self.cache.delete(_cache_key(key))
        return row

    def config(self, key: str) -> ExperimentConfig | None:
        """The experiment's assignment configuration, through the cache."""
        cached = self.cache.get(_cache_key(key))
        if cached is not None:
            return None if cached.get("missing") else self._parsed(cached)
        return self.load_config(key)

    def config_after_fast_path(self, key: str) -> ExperimentConfig | None:
        """After `config_without_io` said False: an in-process cache already missed (do not
        ask it twice), a shared cache has not been asked yet."""
        return self.load_config(key) if self.cache.local else self.config(key)

    def load_config(self, key: str) -> ExperimentConfig | None:
        """From the database, then into the cache."""
        with self.db.session() as session:
            row = session.scalar(select(Experiment).where(Experiment.key == key))
            config = None if row is None else ExperimentConfig.from_row(row)
        self.cache.set(_cache_key(key), _MISSING if config is None else config.to_dict())
        return config

    def count_by_status(self) -> dict[str, int]:
        with self.db.session() as session:
            rows = session.execute(
                select(Experiment.status, func.count(Experiment.id)).group_by(Experiment.status)
            )
            return {status: int(count) for status, count in rows}

    # --- assignment ----------------------------------------------------------------------
    def config_without_io(self, key: str) -> ExperimentConfig | bool | None:
        """The cached configuration when the cache is in-process; False when only I/O can say."""
        if not self.cache.local:
            return False
        cached = self.cache.get(_cache_key(key))
        if cached is None:
            return False
        return None if cached.get("missing") else self._parsed(cached)

    def _parsed(self, cached: dict[str, Any]) -> ExperimentConfig:
        # Parsing targeting conditions costs more than the assignment itself: parse once per
        # cached entry (the in-process cache hands back the same object until it expires).
        memo = self._parse_memo.get(cached["key"])
        if memo is not None and memo[0] is cached:
            return memo[1]
        config = ExperimentConfig.from_dict(cached)
        if len(self._parse_memo) > 10_000:
            self._parse_memo.clear()
        self._parse_memo[cached["key"]] = (cached, config)
        return config

    def already_exposed(self, experiment_id: int, user_id: str) -> bool:
        return (experiment_id, user_id) in self._exposed

    def record_exposure(self, experiment_id: int, user_id: str, variant: str) -> None:
        """Insert the user's first exposure (idempotent: the unique constraint decides)."""
        marker = (experiment_id, user_id)
        with self._exposed_lock:
            if marker in self._exposed:
                return
        values = {
            "experiment_id": experiment_id,
            "user_id": user_id,
            "variant": variant,
            "created_at": datetime.now(UTC),
        }
        dialect = self.db.dialect
        if dialect == "postgresql":
            statement: Any = postgresql.insert(Exposure).values(**values).on_conflict_do_nothing()
        else:
            statement = sqlite.insert(Exposure).values(**values).on_conflict_do_nothing()
        with self.db.session() as session:
            session.execute(statement)
        with self._exposed_lock:
            self._exposed[marker] = None
            if len(self._exposed) > self.EXPOSED_MEMORY:
                self._exposed.popitem(last=False)
