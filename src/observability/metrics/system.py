"""Host, process and event-loop metrics (psutil), in single- and multi-process mode alike.

Host metrics (CPU, memory, disk per mount, network) describe the machine, so whichever
process answers a scrape reports them live (`SystemCollector`). Process metrics describe one
process, and in multi-process mode a scrape reaches only one worker; prometheus_client's own
process collector reports nothing there. So:

- single process: `SystemCollector` also reports `process_*` and `python_gc_*` live, no pid label;
- multi-process: `ProcessSampler`, a task in every worker, writes them every few seconds to
  the shared files: gauges (memory, fds, threads, start time) are per worker, labelled `pid`
  by prometheus_client ("liveall": dead workers disappear); counters (CPU seconds, GC
  collections) are summed over all workers that ever ran, so they stay monotonic.

Given a memory budget (bytes the service may hold, e.g. its container's limit, see
`cgroup_memory_limit`), `process_memory_usage_ratio` is resident memory / budget: one process,
or the sum over the live workers ("livesum"), who share the budget as they share the limit.

`RuntimeMetrics` picks the right parts and starts/stops the tasks from an app lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from observability.metrics.names import (
    EVENT_LOOP_LAG,
    PROCESS_MEMORY,
    SYSTEM_CPU,
    SYSTEM_DISK,
    SYSTEM_MEMORY,
    SYSTEM_NETWORK,
)
from observability.metrics.prometheus import multiprocess_dir

__all__ = [
    "EVENT_LOOP_LAG",
    "PROCESS_MEMORY",
    "SYSTEM_CPU",
    "SYSTEM_DISK",
    "SYSTEM_MEMORY",
    "SYSTEM_NETWORK",
    "EventLoopLagMonitor",
    "ProcessSampler",
    "RuntimeMetrics",
    "SystemCollector",
    "cgroup_memory_limit",
]

_PROCESS_MEMORY_HELP = "Resident memory as a share of the memory budget"


def cgroup_memory_limit(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """This process's cgroup v2 memory limit in bytes: the lowest `memory.max` on its cgroup's
    path up to `root` (a limit on a parent binds too). None without cgroup v2 or a limit."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:  # cgroup v1 only
        return None
    parts = [p for p in path.strip().split("/") if p and p != ".."]
    limits = []
    for depth in range(len(parts), -1, -1):
        try:
            raw = (root.joinpath(*parts[:depth]) / "memory.max").read_text(encoding="utf-8")
        except OSError:
            continue  # not mounted, or the root cgroup (which has no memory.max)
        raw = raw.strip()
        if raw.isdigit() and int(raw) > 0:
            limits.append(int(raw))
    return min(limits) if limits else None


def _mount_of(path: str) -> str:
    """The mount point a path lives on (walk up until os.path.ismount)."""
    current = os.path.realpath(path)
    while not os.path.ismount(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _process_families(proc: psutil.Process, memory_budget: int | None) -> Iterator[Metric]:
    with proc.oneshot():
        memory = proc.memory_info()
        cpu = proc.cpu_times()
        threads = proc.num_threads()
        fds = proc.num_fds()
        started = proc.create_time()
    yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory", value=memory.rss)
    yield GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory", value=memory.vms)
    if memory_budget:
        yield GaugeMetricFamily(
            PROCESS_MEMORY, _PROCESS_MEMORY_HELP, value=memory.rss / memory_budget
        )
    yield CounterMetricFamily(
        "process_cpu_seconds", "User and system CPU time", cpu.user + cpu.system
    )
    yield GaugeMetricFamily("process_open_fds", "Open file descriptors", value=fds)
    yield GaugeMetricFamily("process_threads", "OS threads", value=threads)
    yield GaugeMetricFamily("process_start_time_seconds", "Start time (Unix)", value=started)
    collections = CounterMetricFamily(
        "python_gc_collections", "Garbage collector runs", labels=["generation"]
    )
    collected = CounterMetricFamily(
        "python_gc_objects_collected", "Objects the collector freed", labels=["generation"]
    )
    for generation, stats in enumerate(gc.get_stats()):
        collections.add_metric([str(generation)], stats["collections"])
        collected.add_metric([str(generation)], stats["collected"])
    yield collections
    yield collected


class SystemCollector(Collector):
    """Host metrics read at scrape time, plus this process's metrics when `process` is true.

    - `system_cpu_usage_ratio`: busy share of all CPUs since the previous scrape (since boot
      on the first one), 0..1;
    - `system_memory_usage_ratio`: (total - available) / total;
    - `system_disk_usage_ratio{mount}`: used / (used + free) of the mount holding each path;
    - `system_network_bytes_total{direction=sent|received}`;
    - with `process` and a `memory_budget` (bytes): `process_memory_usage_ratio`.
    Errors never fail the scrape: a part that cannot be read is left out and counted.
    """

    def __init__(
        self,
        disk_paths: Iterable[str] = ("/",),
        *,
        process: bool = True,
        memory_budget: int | None = None,
    ) -> None:
        self.mounts = sorted({_mount_of(path) for path in disk_paths})
        self.process = psutil.Process() if process else None
        self.memory_budget = memory_budget
        self._cpu_last: tuple[float, float] | None = None
        self.errors = 0

    def _cpu_ratio(self) -> float:
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        # guest time is already inside user time on Linux: leave it out of the total
        total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        last, self._cpu_last = self._cpu_last, (idle, total)
        if last is not None and total - last[1] > 0:
            idle, total = idle - last[0], total - last[1]
        return min(1.0, max(0.0, 1.0 - idle / total)) if total > 0 else 0.0

    def collect(self) -> Iterator[Metric]:
        yield from self._guarded(self._host)
        process = self.process
        if process is not None:
            yield from self._guarded(lambda: _process_families(process, self.memory_budget))

    def _guarded(self, part: Any) -> Iterator[Metric]:
        try:
            families = list(part())
        except Exception:  # a scrape must not fail because one reading did
            self.errors += 1
            return
        yield from families

    def _host(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(SYSTEM_CPU, "Busy share of all CPUs", value=self._cpu_ratio())
        memory = psutil.virtual_memory()
        yield GaugeMetricFamily(
            SYSTEM_MEMORY, "Memory in use", value=(memory.total - memory.available) / memory.total
        )
        disk = GaugeMetricFamily(SYSTEM_DISK, "Disk space in use", labels=["mount"])
        for mount in self.mounts:
            with contextlib.suppress(OSError):
                usage = psutil.disk_usage(mount)
                capacity = usage.used + usage.free  # what df reports: reserved blocks excluded
                disk.add_metric([mount], usage.used / capacity if capacity else 0.0)
        yield disk
        network = CounterMetricFamily(
            SYSTEM_NETWORK.removesuffix("_total"), "Network bytes", labels=["direction"]
        )
        counters = psutil.net_io_counters()
        network.add_metric(["sent"], counters.bytes_sent)
        network.add_metric(["received"], counters.bytes_recv)
        yield network


class _PeriodicTask:
    """Runs `tick()` every `interval` seconds on the running loop until stopped."""

    interval: float

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self.errors = 0

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        raise NotImplementedError


class EventLoopLagMonitor(_PeriodicTask):
    """`event_loop_lag_seconds`: how late a sleep of `interval` seconds wakes up.

    The gauge holds the largest lag of the last `window` seconds, so a stall between two
    scrapes is still visible at the next one. Multi-process: the worst live worker ("livemax").
    """

    def __init__(
        self, registry: CollectorRegistry, *, interval: float = 0.5, window: float = 15.0
    ) -> None:
        super().__init__()
        self.interval = interval
        self.gauge = Gauge(
            EVENT_LOOP_LAG,
            f"Largest event-loop scheduling delay over the last {window:g} s",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._recent: deque[float] = deque(maxlen=max(1, round(window / interval)))
        self.last: float | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            try:
                lag = max(0.0, loop.time() - started - self.interval)
                self._recent.append(lag)
                self.last = lag
                self.gauge.set(max(self._recent))
            except Exception:
                self.errors += 1


class ProcessSampler(_PeriodicTask):
    """Multi-process mode: this worker's process and GC metrics, written every `interval` s."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        interval: float = 5.0,
        memory_budget: int | None = None,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.process = psutil.Process()
        self.memory_budget = memory_budget

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=registry, multiprocess_mode="liveall")

        self.rss = gauge("process_resident_memory_bytes", "Resident memory")
        self.vms = gauge("process_virtual_memory_bytes", "Virtual memory")
        self.fds = gauge("process_open_fds", "Open file descriptors")
        self.threads = gauge("process_threads", "OS threads")
        self.start_time = gauge("process_start_time_seconds", "Start time (Unix)")
        # Workers share the budget: the sum of their shares is the service's share.
        self.memory_share = (
            Gauge(
                PROCESS_MEMORY, _PROCESS_MEMORY_HELP, registry=registry, multiprocess_mode="livesum"
            )
            if memory_budget
            else None
        )
        self.cpu = Counter("process_cpu_seconds", "User and system CPU time", registry=registry)
        self.gc_runs = Counter(
            "python_gc_collections", "Garbage collector runs", ["generation"], registry=registry
        )
        self._cpu_seen = 0.0
        self._gc_seen = [0] * len(gc.get_stats())

    def sample(self) -> None:
        proc = self.process
        with proc.oneshot():
            memory = proc.memory_info()
            cpu = proc.cpu_times()
            self.threads.set(proc.num_threads())
            self.fds.set(proc.num_fds())
            self.start_time.set(proc.create_time())
        self.rss.set(memory.rss)
        self.vms.set(memory.vms)
        if self.memory_share is not None and self.memory_budget:
            self.memory_share.set(memory.rss / self.memory_budget)
        # Counters take increments: add what accrued since the previous sample.
        used = cpu.user + cpu.system
        self.cpu.inc(max(0.0, used - self._cpu_seen))
        self._cpu_seen = used
        for generation, stats in enumerate(gc.get_stats()):
            runs = stats["collections"]
            self.gc_runs.labels(str(generation)).inc(max(0, runs - self._gc_seen[generation]))
            self._gc_seen[generation] = runs

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:
                self.errors += 1
            await asyncio.sleep(self.interval)


class RuntimeMetrics:
    """Host, process, GC and event-loop metrics for one app; `start()`/`stop()` in its lifespan.

    Registers a `SystemCollector` on `registry` (host metrics; process metrics too in single-
    process mode) and an `EventLoopLagMonitor`; in multi-process mode also a `ProcessSampler`.
    `memory_budget` (bytes, None: no ratio) is what `process_memory_usage_ratio` divides by.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        disk_paths: Iterable[str] = ("/",),
        lag_interval: float = 0.5,
        process_interval: float = 5.0,
        multiprocess: bool | None = None,
        memory_budget: int | None = None,
    ) -> None:
        if multiprocess is None:
            multiprocess = multiprocess_dir() is not None
        self.system = SystemCollector(
            disk_paths, process=not multiprocess, memory_budget=memory_budget
        )
        registry.register(self.system)
        self.loop_lag = EventLoopLagMonitor(registry, interval=lag_interval)
        self.sampler = (
            ProcessSampler(registry, interval=process_interval, memory_budget=memory_budget)
            if multiprocess
            else None
        )

    async def start(self) -> None:
        self.loop_lag.start()
        if self.sampler is not None:
            self.sampler.start()

    async def stop(self) -> None:
        await self.loop_lag.stop()
        if self.sampler is not None:
            await self.sampler.stop()
