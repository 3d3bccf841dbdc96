"""System, process and event-loop metrics: sane values, both registry modes, no duplicates."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from observability.metrics.system import (
    EventLoopLagMonitor,
    ProcessSampler,
    RuntimeMetrics,
    SystemCollector,
)

LOOPBACK = "127.0.0.1"


def families(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    parsed = text_string_to_metric_families(generate_latest(registry).decode())
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in parsed}


def test_ratios_are_between_zero_and_one(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    collector = SystemCollector([str(tmp_path), "/"])
    registry.register(collector)
    for _ in range(2):  # the second scrape measures CPU since the first
        sum(range(200_000))
        value = registry.get_sample_value
        cpu = value("system_cpu_usage_ratio")
        memory = value("system_memory_usage_ratio")
        assert cpu is not None
        assert 0.0 <= cpu <= 1.0
        assert memory is not None
        assert 0.0 < memory < 1.0
        disks = families(registry)["system_disk_usage_ratio"]
        assert disks
        assert all(0.0 <= ratio <= 1.0 for _, ratio in disks)
        assert {"mount": "/"} in [labels for labels, _ in disks]
    assert collector.errors == 0


def send_over_loopback(size: int) -> None:
    """Push `size` bytes through a TCP connection on 127.0.0.1 (counted as sent and received)."""
    with socket.create_server((LOOPBACK, 0)) as server:
        client = socket.create_connection(server.getsockname()[:2])
        peer, _ = server.accept()
        with client, peer:
            reader = threading.Thread(target=lambda: _drain(peer, size))
            reader.start()
            client.sendall(b"x" * size)
            reader.join(30)


def _drain(sock: socket.socket, size: int) -> None:
    while size > 0:
        chunk = sock.recv(65536)
        if not chunk:
            return
        size -= len(chunk)


def test_network_counters_follow_real_traffic() -> None:
    registry = CollectorRegistry()
    registry.register(SystemCollector())
    value = registry.get_sample_value
    sent = value("system_network_bytes_total", {"direction": "sent"})
    received = value("system_network_bytes_total", {"direction": "received"})
    assert sent is not None
    assert received is not None
    send_over_loopback(4_000_000)
    # Other processes only add to the host's counters: at least what this test pushed.
    assert (value("system_network_bytes_total", {"direction": "sent"}) or 0) - sent >= 4_000_000
    after = value("system_network_bytes_total", {"direction": "received"}) or 0
    assert after - received >= 4_000_000


def test_process_and_gc_readings_match_the_process() -> None:
    registry = CollectorRegistry()
    registry.register(SystemCollector())
    value = registry.get_sample_value
    me = psutil.Process()
    assert value("process_open_fds") == pytest.approx(me.num_fds(), abs=2)
    assert value("process_threads") == pytest.approx(me.num_threads(), abs=2)
    assert value("process_resident_memory_bytes") == pytest.approx(me.memory_info().rss, rel=0.2)
    assert value("process_start_time_seconds") == pytest.approx(me.create_time(), abs=1)
    assert (value("process_cpu_seconds_total") or 0) > 0
    runs = value("python_gc_collections_total", {"generation": "0"})
    assert runs is not None
    gc.collect(0)
    assert value("python_gc_collections_total", {"generation": "0"}) >= runs + 1


def test_the_event_loop_lag_monitor_sees_a_blocked_loop() -> None:
    registry = CollectorRegistry()
    monitor = EventLoopLagMonitor(registry, interval=0.05)

    async def scenario() -> None:
        monitor.start()
        assert monitor.running
        await asyncio.sleep(0.12)  # a few undisturbed ticks
        time.sleep(0.3)  # block the loop: the pending tick wakes at least 0.25 s late
        await asyncio.sleep(0.12)
        await monitor.stop()
        assert not monitor.running

    asyncio.run(scenario())
    lag = registry.get_sample_value("event_loop_lag_seconds")
    assert lag is not None
    assert lag >= 0.25
    assert monitor.errors == 0


def test_runtime_metrics_start_and_stop_from_a_lifespan() -> None:
    registry = CollectorRegistry()
    runtime = RuntimeMetrics(registry, lag_interval=0.02, multiprocess=False)
    assert runtime.sampler is None  # single process: the collector reads the process live

    async def lifespan() -> None:
        await runtime.start()
        await asyncio.sleep(0.1)
        await runtime.stop()

    asyncio.run(lifespan())
    names = families(registry)
    assert "event_loop_lag_seconds" in names
    assert "process_resident_memory_bytes" in names
    assert "system_cpu_usage_ratio" in names


def test_multiprocess_layout_has_no_duplicate_process_metrics() -> None:
    # In multi-process mode the process metrics come from the sampler's gauges (per pid in
    # the shared files), not from the collector: one source each, so the scrape stays valid.
    registry = CollectorRegistry()
    runtime = RuntimeMetrics(registry, multiprocess=True)
    assert runtime.sampler is not None
    runtime.sampler.sample()
    runtime.sampler.sample()
    value = registry.get_sample_value
    me = psutil.Process()
    assert value("process_resident_memory_bytes") == pytest.approx(me.memory_info().rss, rel=0.2)
    assert value("process_open_fds") == pytest.approx(me.num_fds(), abs=2)
    assert value("process_start_time_seconds") == pytest.approx(me.create_time(), abs=1)
    assert (value("process_cpu_seconds_total") or 0) > 0
    # The sampler adds only the collections since its last sample.
    runs = value("python_gc_collections_total", {"generation": "2"})
    assert runs is not None
    gc.collect()
    runtime.sampler.sample()
    assert value("python_gc_collections_total", {"generation": "2"}) >= runs + 1
    assert value("system_cpu_usage_ratio") is not None  # host metrics stay live
    text = generate_latest(registry).decode()
    assert text.count("# TYPE process_resident_memory_bytes ") == 1
    assert text.count("# TYPE process_cpu_seconds_total ") == 1


def test_sampler_counters_only_take_increments() -> None:
    registry = CollectorRegistry()
    sampler = ProcessSampler(registry)
    sampler.sample()
    first = registry.get_sample_value("process_cpu_seconds_total") or 0.0
    sum(range(300_000))
    sampler.sample()
    second = registry.get_sample_value("process_cpu_seconds_total") or 0.0
    used = os.times()
    assert first <= second <= used.user + used.system + 0.05
