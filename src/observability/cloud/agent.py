"""Ship logs to CloudWatch from a separate, low-priority process: the application only appends.

Why a process: measured on one core (benchmarks/http_overhead.py, variants F, C and T), shipping
from a thread of the serving process cost 11% of its request throughput and raised p99 from 13
to 60 ms: reading the journal, batching and botocore's serialisation are ~12 us of Python per
event, all holding the GIL the event loop needs; through the agent, 0 to 1%. In a process of
its own that work never holds the application's GIL, and its scheduling keeps it out of the
requests' way: the kernel's idle class while it keeps up (CPU time nothing else wants), nice 19
once events wait 20 s without progress (a small guaranteed share of a busy CPU: the idle class
alone starved it for over a minute on a machine busy for minutes), see `_Scheduling`. While the
CPU is saturated the journal (durable, capped) absorbs the backlog and the agent catches up.

    application process                      agent process (python -m observability.cloud.agent)
    ShippingAgent.submit_many()              JournalShipper(journal_role="reader")
      -> Journal(role="writer").append()       reads the same journal directory, ships in order,
                                               checkpoints, reports to agent-stats.json

Files in the journal directory besides the journal's own:
    agent-stats.json   the agent's counters, rewritten every half second (agent -> application)
    close-deadline     the application asks the agent to stop: ship until this time, then exit
    agent.log          the agent's stderr (a crash's traceback)

Nothing is lost when either process dies: what `submit_many()` returned from is in the journal
file. If the application is killed, the agent notices (its parent changes), keeps shipping for up
to `orphan_drain_seconds`, then exits; the next start replays the rest. If the agent dies, the
application starts a new one (with backoff) and counts the restart in `last_error`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import IO, Any, Literal

from observability.cloud.events import ShipperConfig, ShipperStats, default_stream_name
from observability.cloud.journal import Journal, JournalLockedError
from observability.cloud.producer import JournalProducer
from observability.cloud.shipper import JournalShipper

__all__ = ["AgentPriority", "ShippingAgent", "main"]

AgentPriority = Literal["adaptive", "idle", "low", "normal"]
"""See `_Scheduling`: adaptive (default) idles while keeping up, nice 19 when it falls behind."""
STATS_FILE = "agent-stats.json"
DEADLINE_FILE = "close-deadline"
LOG_FILE = "agent.log"
_REPORT_SECONDS = 0.5
_POLL_SECONDS = 0.1
_STALE_SECONDS = 5.0  # an agent silent this long is not shipping (dead, hung or starved)
_COUNTERS = ("shipped", "retried_batches", "rejected", "clamped", "groups_created", "truncated")


class ShippingAgent(JournalProducer):
    """The application's side: the same interface as `CloudWatchShipper`, shipping done by a
    child process. `submit_many()` never raises and never waits on the network."""

    def __init__(
        self,
        config: ShipperConfig,
        *,
        priority: AgentPriority = "adaptive",
        orphan_drain_seconds: float = 60.0,
        stall_seconds: float = 20.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`stall_seconds`: how long events wait without progress before an adaptive agent
        leaves the idle class for nice 19 (see `_Scheduling`)."""
        config.validate()
        stream = config.stream_name or default_stream_name(config.instance_id)
        # The stream is named after this process (the worker), not the agent's pid.
        self.config = ShipperConfig(**{**_config_fields(config), "stream_name": stream})
        self.stream_name = stream
        journal = Journal(
            config.journal_dir,
            max_bytes=config.max_journal_bytes,
            segment_bytes=config.segment_bytes,
            clock=clock,
            role="writer",
        )
        super().__init__(self.config, journal)
        self._dir = Path(config.journal_dir)
        self._priority = priority
        self._orphan_drain_seconds = orphan_drain_seconds
        self._stall_seconds = stall_seconds
        self._clock = clock
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._base: dict[str, Any] = {"dropped": {}}  # totals of agents that have exited
        self._restarts = 0
        self._last_error: str | None = None
        self._started_at = clock()
        self._closing = False
        self._closed = False
        self._drained = False
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="cloudwatch-agent", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ShippingAgent:
        # A previous run's agent-stats.json is ignored: `_agent_stats` reads our agent's pid only.
        self._spawn()
        self._watcher.start()
        return self

    def _spawn(self) -> None:
        config = {**_config_fields(self.config), "journal_dir": str(self.config.journal_dir)}
        if self._log is None:
            self._log = (self._dir / LOG_FILE).open("ab")
        with contextlib.suppress(FileNotFoundError):
            (self._dir / DEADLINE_FILE).unlink()
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "observability.cloud.agent",
                "--config",
                json.dumps(config),
                "--parent",
                str(os.getpid()),
                "--priority",
                self._priority,
                "--orphan-drain",
                repr(self._orphan_drain_seconds),
                "--stall-seconds",
                repr(self._stall_seconds),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            close_fds=True,
        )

    def _watch(self) -> None:
        """Restart an agent that died (not one we stopped), backing off up to 30 s."""
        while not self._stop.wait(1.0):
            process = self._process
            if process is None or process.poll() is None or self._closing:
                continue
            with self._stats_lock:
                self._fold(self._agent_stats())
                self._restarts += 1
                self._last_error = f"agent exited with code {process.returncode}; restarted"
            if self._stop.wait(min(30.0, 2.0 ** min(self._restarts, 5))):
                return
            if not self._closing:
                self._spawn()

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is shipped; False if the timeout passed."""
        deadline = time.monotonic() + timeout
        process = self._process
        if process is None:
            return self._journal.pending_bytes == 0
        while self._journal.pending_bytes > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        # Shipped; let the agent's next report say so too, so stats() agrees with us.
        drained_at = self._clock()
        while float(self._agent_stats().get("written_at", 0.0)) < drained_at:
            if time.monotonic() >= deadline or process.poll() is not None:
                break
            time.sleep(0.05)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Let the agent ship what is left within `timeout` seconds, then stop it. True if
        nothing was left behind (what is left stays in the journal for the next start)."""
        if self._closed:
            return self._drained
        self._closing = True
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            # A file, not a signal: an agent still starting (importing boto3) would die of a
            # SIGTERM before its handler exists, and lose its chance to ship.
            _write_atomic(self._dir / DEADLINE_FILE, repr(self._clock() + timeout).encode())
            try:
                process.wait(timeout + 2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5.0)
        self._drained = self._journal.pending_bytes == 0
        with contextlib.suppress(FileNotFoundError):
            (self._dir / DEADLINE_FILE).unlink()
        with self._stats_lock:
            self._fold(self._agent_stats())
        self._closed = True
        self._journal.close()
        if self._log is not None:
            self._log.close()
        if self._watcher.is_alive():
            self._watcher.join(2.0)
        return self._drained

    # -- statistics ------------------------------------------------------------------------

    def _agent_stats(self) -> dict[str, Any]:
        try:
            data = json.loads((self._dir / STATS_FILE).read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        # A previous worker's agent may still be draining this journal: not our counters.
        process = self._process
        if process is not None and data.get("pid") != process.pid:
            return {}
        return data

    def _fold(self, agent: dict[str, Any]) -> None:
        """Add an exited agent's totals to the base (caller holds the stats lock)."""
        for name in _COUNTERS:
            self._base[name] = self._base.get(name, 0) + int(agent.get(name, 0))
        if agent.get("last_error"):
            self._base["last_error"] = agent["last_error"]
        dropped = self._base["dropped"]
        for reason, count in (agent.get("dropped") or {}).items():
            dropped[reason] = dropped.get(reason, 0) + int(count)
        # Folded: the exited agent's last report must not be counted again until the next
        # agent (another pid) writes its own.
        with contextlib.suppress(FileNotFoundError):
            (self._dir / STATS_FILE).unlink()

    def stats(self) -> ShipperStats:
        agent = {} if self._closed else self._agent_stats()
        spooled = self._journal.pending_bytes
        now = self._clock()
        lag = float(agent.get("lag_seconds", 0.0))
        reported = agent.get("written_at")
        if spooled > 0:
            silent_since = float(reported) if reported is not None else self._started_at
            if now - silent_since > _STALE_SECONDS:
                # Not shipping (dead, hung, or starved of CPU): the backlog is at least this old.
                lag = max(lag, now - silent_since)
        journal_dropped = self._journal.dropped_snapshot()
        with self._stats_lock:
            dropped = dict(self._dropped)
            for source in (journal_dropped, self._base["dropped"], agent.get("dropped") or {}):
                for reason, count in source.items():
                    dropped[reason] = dropped.get(reason, 0) + int(count)
            totals = {n: self._base.get(n, 0) + int(agent.get(n, 0)) for n in _COUNTERS}
            # Lines of submit_lines are truncated where they are split: in the agent.
            totals["truncated"] += self._truncated
            return ShipperStats(
                submitted=self._submitted,
                spooled_bytes=spooled,
                dropped=dropped,
                lag_seconds=lag,
                last_error=(
                    agent.get("last_error") or self._last_error or self._base.get("last_error")
                ),
                **totals,
            )


# -- the agent process -------------------------------------------------------------------------


def _config_fields(config: ShipperConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in fields(config)}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _report(shipper: JournalShipper, directory: Path, scheduling: _Scheduling) -> None:
    stats = asdict(shipper.stats())
    stats["dropped"] = dict(stats["dropped"])
    stats["written_at"] = time.time()
    stats["pid"] = os.getpid()
    stats["scheduling"] = scheduling.report()
    _write_atomic(directory / STATS_FILE, json.dumps(stats).encode())


class _Scheduling:
    """The agent's CPU priority (every thread of it).

    adaptive (default): the kernel's idle class (SCHED_IDLE: only CPU time nothing else wants)
    while the agent keeps up; once events have waited `stall_seconds` without progress, nice 19
    (a small guaranteed share of a busy CPU), and back to idle when the journal is drained. A
    process can only leave the idle class with CAP_SYS_NICE or an RLIMIT_NICE that allows its
    nice value (20 - nice <= limit, so at nice 19 a limit of 1 is enough: nice is raised to 19
    *before* leaving the class); without either, adaptive is plain nice 19, never a trap.
    idle: always SCHED_IDLE (can starve on a machine busy for minutes). low: always nice 19.
    normal: like the application.

    A switch the kernel refuses is counted (`errors`), named in `last_error` (agent-stats.json)
    and written to the agent's stderr (agent.log) the first time for each level.
    """

    STALL_SECONDS = 20.0

    def __init__(self, priority: str, stall_seconds: float = STALL_SECONDS) -> None:
        self.mode = priority
        self.stall_seconds = stall_seconds
        if priority in ("adaptive", "idle") and not hasattr(os, "SCHED_IDLE"):
            self.mode = "low"
        if priority == "adaptive" and not _can_leave_idle():
            self.mode = "low"
        self.current = "normal"
        self.errors = 0
        self.last_error: str | None = None
        self._reported: set[str] = set()
        self._waiting_since: float | None = None
        self.apply("idle" if self.mode in ("adaptive", "idle") else self.mode)

    def apply(self, level: str) -> None:
        if level == self.current:
            return
        try:
            for tid in _threads():
                _set_level(tid, level)
        except OSError as exc:
            self.errors += 1
            self.last_error = f"cannot switch to {level}: {exc.strerror or exc}"
            if level not in self._reported:
                self._reported.add(level)
                print(f"agent scheduling: {self.last_error}", file=sys.stderr, flush=True)
            return
        self.current = level

    def update(self, waiting: bool, progress_at: float) -> None:
        """Called every half second with the shipper's backlog."""
        if self.mode != "adaptive":
            return
        now = time.monotonic()
        if not waiting:
            self._waiting_since = None
            self.apply("idle")
            return
        if self._waiting_since is None:
            self._waiting_since = now
        if now - max(self._waiting_since, progress_at) >= self.stall_seconds:
            self.apply("low")

    def report(self) -> dict[str, Any]:
        return {"class": self.current, "errors": self.errors, "last_error": self.last_error}


def _set_level(tid: int, level: str) -> None:
    if level == "idle":
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    elif level == "low":
        # Nice first: the kernel lets a thread leave SCHED_IDLE only if RLIMIT_NICE would let
        # it set the nice value it has (20 - nice <= limit). At nice 0 that takes a limit of
        # 20; at nice 19, a limit of 1.
        os.setpriority(os.PRIO_PROCESS, tid, 19)
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    else:
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, tid, 0)


def _can_leave_idle() -> bool:
    """CAP_SYS_NICE (not merely uid 0: a container's root often lacks it) or RLIMIT_NICE >= 1."""
    import resource

    return _has_cap_sys_nice() or resource.getrlimit(resource.RLIMIT_NICE)[0] >= 1


def _has_cap_sys_nice() -> bool:
    cap_sys_nice = 23  # linux/capability.h
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap_sys_nice & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _threads() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _open_reader(config: ShipperConfig, parent: int) -> JournalShipper | None:
    # A previous agent of this journal may still be draining after its application died.
    while True:
        try:
            return JournalShipper(config, journal_role="reader")
        except JournalLockedError:
            if os.getppid() != parent:
                return None
            time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="observability.cloud.agent")
    parser.add_argument("--config", required=True, help="ShipperConfig fields as JSON")
    parser.add_argument("--parent", type=int, required=True, help="the application's pid")
    parser.add_argument(
        "--priority", choices=("adaptive", "idle", "low", "normal"), default="adaptive"
    )
    parser.add_argument("--orphan-drain", type=float, default=60.0)
    parser.add_argument("--stall-seconds", type=float, default=_Scheduling.STALL_SECONDS)
    args = parser.parse_args(argv)
    raw = json.loads(args.config)
    raw["journal_dir"] = Path(raw["journal_dir"])
    config = ShipperConfig(**raw)
    directory = Path(config.journal_dir)
    scheduling = _Scheduling(args.priority, args.stall_seconds)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C reaches the whole process group; the application stops us with a deadline.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    shipper = _open_reader(config, args.parent)
    if shipper is None:
        return 0
    shipper.start()  # its thread inherits the scheduling of this one
    orphaned = False
    deadline_file = directory / DEADLINE_FILE
    next_report = 0.0
    while not stop.wait(_POLL_SECONDS) and not deadline_file.exists():
        if time.monotonic() >= next_report:
            scheduling.update(*shipper.backlog())
            _report(shipper, directory, scheduling)
            next_report = time.monotonic() + _REPORT_SECONDS
        if os.getppid() != args.parent:
            orphaned = True
            break
    if orphaned:
        timeout = args.orphan_drain
    else:
        try:
            timeout = float(deadline_file.read_text()) - time.time()
        except (OSError, ValueError):
            timeout = 10.0
    shipper.close(max(0.0, timeout))
    _report(shipper, directory, scheduling)
    return 0


if __name__ == "__main__":
    sys.exit(main())
