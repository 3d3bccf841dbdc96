"""The platform's long-lived parts, built once per process and shared by the routers."""

from __future__ import annotations

from dataclasses import dataclass

from experimentation_platform.faults import Faults, FaultyCache
from experimentation_platform.settings import Settings
from experimentation_platform.storage.cache import ConfigCache, make_cache
from experimentation_platform.storage.db import Database
from experimentation_platform.storage.events import EventStore
from experimentation_platform.storage.experiments import ExperimentStore
from experimentation_platform.storage.flags import FlagStore
from experimentation_platform.storage.keys import KeyStore

__all__ = ["Platform", "build_platform"]


@dataclass
class Platform:
    settings: Settings
    db: Database
    cache: ConfigCache
    keys: KeyStore
    experiments: ExperimentStore
    flags: FlagStore
    events: EventStore
    faults: Faults

    def close(self) -> None:
        self.cache.close()
        self.db.dispose()


def build_platform(settings: Settings) -> Platform:
    db = Database(settings.resolved_database_url, pool_size=settings.db_pool_size)
    cache = make_cache(
        settings.redis_url,
        settings.cache_ttl_seconds,
        prefix=settings.cache_prefix,
    )
    faults = Faults(enabled=settings.fault_injection)
    if faults.enabled:
        cache = FaultyCache(cache, faults)  # the database hook comes after query timing
    experiments = ExperimentStore(db, cache)
    return Platform(
        settings=settings,
        db=db,
        cache=cache,
        keys=KeyStore(db, cache_seconds=settings.key_cache_seconds),
        experiments=experiments,
        flags=FlagStore(db, cache),
        events=EventStore(db, experiments),
        faults=faults,
    )
