"""Configuration cache: in-process (default) or Redis (shared by several instances).

Staleness bound (documented in docs/configuration.md):
- in-process: a change made through this instance is visible at once (the entry is deleted);
  a change made through another instance is visible after at most `ttl` seconds.
- Redis: every instance deletes the shared entry after committing a change, so all instances
  see it on their next read; a read racing with a write can re-store the old value, which
  lives at most `ttl` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import orjson
import redis

__all__ = [
    "CacheObserver",
    "CacheTimer",
    "ConfigCache",
    "MemoryCache",
    "RedisCache",
    "make_cache",
]

# (backend, outcome) with outcome in hit | miss | eviction | error
CacheObserver = Callable[[str, str], None]
# (backend, operation, seconds, failed) of every call: get | set | delete | ping
CacheTimer = Callable[[str, str, float, bool], None]


def _ignore(_backend: str, _outcome: str) -> None:
    return


def _untimed(_backend: str, _operation: str, _seconds: float, _failed: bool) -> None:
    return


@contextmanager
def _timed(cache: MemoryCache | RedisCache, operation: str) -> Iterator[None]:
    """Time one call for `cache.timer`; a Redis error marks it failed (and goes on up)."""
    started = time.perf_counter()
    failed = False
    try:
        yield
    except redis.RedisError:
        failed = True
        raise
    finally:
        cache.timer(cache.backend, operation, time.perf_counter() - started, failed)


class ConfigCache(Protocol):
    backend: str
    observer: CacheObserver  # (backend, outcome) of every look-up, for cache metrics
    timer: CacheTimer  # (backend, operation, seconds, failed) of every call, for latency

    @property
    def local(self) -> bool:
        """True: get() never does I/O, so it may run on the event loop."""
        ...

    def get(self, key: str) -> dict[str, Any] | None: ...
    def set(self, key: str, value: dict[str, Any]) -> None: ...
    def delete(self, *keys: str) -> None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


class MemoryCache:
    """A thread-safe LRU with a time-to-live per entry."""

    backend = "memory"
    local = True

    def __init__(
        self,
        ttl: float = 5.0,
        max_entries: int = 10_000,
        observer: CacheObserver = _ignore,
        clock: Callable[[], float] = time.monotonic,
        timer: CacheTimer = _untimed,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.observer = observer
        self.timer = timer
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with _timed(self, "get"):
            now = self._clock()
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[0] > now:
                    self._entries.move_to_end(key)
                    value: dict[str, Any] | None = entry[1]
                else:
                    value = None
                    if entry is not None:
                        del self._entries[key]
        self.observer(self.backend, "hit" if value is not None else "miss")
        return value

    def set(self, key: str, value: dict[str, Any]) -> None:
        if self.ttl <= 0:
            return
        evicted = 0
        with _timed(self, "set"), self._lock:
            self._entries[key] = (self._clock() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                evicted += 1
        for _ in range(evicted):
            self.observer(self.backend, "eviction")

    def delete(self, *keys: str) -> None:
        with _timed(self, "delete"), self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def ping(self) -> None:
        return

    def close(self) -> None:
        with self._lock:
            self._entries.clear()


class RedisCache:
    """Entries as JSON under a namespaced key with a TTL; Redis errors degrade to misses."""

    backend = "redis"
    local = False

    def __init__(
        self,
        url: str,
        ttl: float = 30.0,
        prefix: str = "ep:cfg:",
        observer: CacheObserver = _ignore,
        timer: CacheTimer = _untimed,
    ) -> None:
        self.ttl = max(1, int(ttl))
        self.prefix = prefix
        self.observer = observer
        self.timer = timer
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            with _timed(self, "get"):
                raw = self.client.get(self.prefix + key)
        except redis.RedisError:
            # The database is the source of truth: a cache outage costs latency, not errors.
            self.observer(self.backend, "error")
            return None
        self.observer(self.backend, "hit" if raw is not None else "miss")
        return None if raw is None else orjson.loads(raw)

    def set(self, key: str, value: dict[str, Any]) -> None:
        try:
            with _timed(self, "set"):
                self.client.set(self.prefix + key, orjson.dumps(value), ex=self.ttl)
        except redis.RedisError:
            self.observer(self.backend, "error")

    def delete(self, *keys: str) -> None:
        if keys:
            # Not swallowed: a failed invalidation must fail the write that needed it,
            # or other instances would serve stale configuration for the whole TTL.
            with _timed(self, "delete"):
                self.client.delete(*(self.prefix + key for key in keys))

    def ping(self) -> None:
        with _timed(self, "ping"):
            self.client.ping()

    def close(self) -> None:
        self.client.close()


def make_cache(
    redis_url: str, ttl: float, observer: CacheObserver = _ignore, prefix: str = "ep:cfg:"
) -> ConfigCache:
    if redis_url:
        return RedisCache(redis_url, ttl=max(ttl, 30.0), prefix=prefix, observer=observer)
    return MemoryCache(ttl=ttl, observer=observer)
