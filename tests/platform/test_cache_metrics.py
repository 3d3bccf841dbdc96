"""The platform's caches report every call's latency and failures to the toolkit's cache
metrics and rolling windows: in-process, a real Redis, and a Redis that is not there."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import CollectorRegistry

from experimentation_platform.storage.cache import MemoryCache, RedisCache
from observability.metrics.cache import CacheMetrics
from observability.metrics.windows import RollingWindows
from tests.support.platform import REDIS_URL, redis_flush_prefix
from tests.support.servers import free_port, unavailable


@pytest.fixture
def metrics() -> tuple[CollectorRegistry, RollingWindows, CacheMetrics]:
    registry, windows = CollectorRegistry(), RollingWindows()
    return registry, windows, CacheMetrics(registry, windows)


def calls(registry: CollectorRegistry, backend: str, operation: str) -> tuple[float, float, float]:
    """(calls, failed calls, timed calls) of one operation."""
    labels = {"backend": backend, "operation": operation}
    value = registry.get_sample_value
    return (
        value("cache_operations_total", labels) or 0.0,
        value("cache_errors_total", labels) or 0.0,
        value("cache_operation_duration_seconds_count", labels) or 0.0,
    )


def test_memory_cache_calls_are_timed_by_operation(
    metrics: tuple[CollectorRegistry, RollingWindows, CacheMetrics],
) -> None:
    registry, windows, cache_metrics = metrics
    cache = MemoryCache(observer=cache_metrics.observe, timer=cache_metrics.timed)
    cache.set("a", {"v": 1})
    assert cache.get("a") == {"v": 1}
    assert cache.get("b") is None
    cache.delete("a")
    assert calls(registry, "memory", "get") == (2, 0, 2)
    assert calls(registry, "memory", "set") == (1, 0, 1)
    assert calls(registry, "memory", "delete") == (1, 0, 1)
    # The windows hold the total and one series per operation.
    assert windows.distribution("cache_operation_duration_seconds", 60).count == 4
    get = windows.distribution('cache_operation_duration_seconds{operation="get"}', 60)
    assert get.count == 2
    totals, _ = windows.counter_totals(60)
    assert totals['cache_operations_total{operation="get"}'] == 2
    assert 'cache_errors_total{operation="get"}' not in totals


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        unavailable(f"Redis is not reachable at {REDIS_URL}")
    prefix = f"ep:test:{secrets.token_hex(4)}:"
    yield prefix
    redis_flush_prefix(prefix)


@pytest.mark.integration
def test_redis_calls_are_timed_against_a_real_redis(
    metrics: tuple[CollectorRegistry, RollingWindows, CacheMetrics], redis_prefix: str
) -> None:
    registry, windows, cache_metrics = metrics
    cache = RedisCache(REDIS_URL, prefix=redis_prefix, timer=cache_metrics.timed)
    try:
        cache.set("k", {"v": 1})
        assert cache.get("k") == {"v": 1}
        cache.ping()
        cache.delete("k")
    finally:
        cache.close()
    for operation in ("get", "set", "ping", "delete"):
        assert calls(registry, "redis", operation) == (1, 0, 1)
    # A network round trip takes a measurable time: the sum is positive.
    labels = {"backend": "redis", "operation": "get"}
    assert (registry.get_sample_value("cache_operation_duration_seconds_sum", labels) or 0) > 0
    assert windows.distribution("cache_operation_duration_seconds", 60).count == 4


def test_a_redis_that_is_gone_counts_errors_per_operation(
    metrics: tuple[CollectorRegistry, RollingWindows, CacheMetrics],
) -> None:
    registry, windows, cache_metrics = metrics
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cache = RedisCache(dead, observer=cache_metrics.observe, timer=cache_metrics.timed)
    try:
        assert cache.get("k") is None  # degrades to a miss for the caller...
        cache.set("k", {"v": 1})
        with pytest.raises(redis.RedisError):
            cache.ping()
        with pytest.raises(redis.RedisError):
            cache.delete("k")
    finally:
        cache.close()
    # ...but every failed call is counted as an error of its operation.
    for operation in ("get", "set", "ping", "delete"):
        assert calls(registry, "redis", operation) == (1, 1, 1)
    totals, _ = windows.counter_totals(60)
    assert totals['cache_errors_total{operation="get"}'] == 1
    assert totals['cache_operations_total{operation="get"}'] == 1
