"""The shipping agent's real CPU scheduling, read from the kernel for every thread of the agent
process (os.sched_getscheduler / os.getpriority on /proc/PID/task/*), under three identities:

- root with CAP_SYS_NICE: adaptive: the idle class while it keeps up, nice 19 once events wait
  `stall_seconds` without progress (CloudWatch refused), the idle class again once drained;
- root without CAP_SYS_NICE (a container's root), RLIMIT_NICE 0, and an unprivileged user with
  RLIMIT_NICE 0: such a process could never leave the idle class, so the agent must never
  enter it: nice 19 from the start and during the stall;
- an unprivileged user with RLIMIT_NICE 1 (where the machine allows raising it): adaptive, the
  case the order of the switch (nice 19 before leaving the idle class) exists for.

The application runs as a child process with the identity under test; its agent inherits it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from observability.cloud import agent as agent_module
from tests.integration.faulty_proxy import FaultyProxy
from tests.support.servers import AWS_TEST_ENV, MotoServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOBODY = 65534
STALL_SECONDS = 1.0
APPLICATION = """
import json, sys, time
from pathlib import Path
from observability.cloud.agent import ShippingAgent
from observability.cloud.events import ShipperConfig

journal, endpoint, stall = sys.argv[1:4]
config = ShipperConfig(
    journal_dir=Path(journal), endpoint_url=endpoint, group_prefix="/sched",
    stream_name="sched/i-1/1", batch_wait_seconds=0.05, backoff_base_seconds=0.05,
    backoff_max_seconds=0.5, connect_timeout_seconds=1.0, read_timeout_seconds=5.0,
)
agent = ShippingAgent(config, stall_seconds=float(stall)).start()
print("started", flush=True)
for line in sys.stdin:
    command, _, arg = line.strip().partition(" ")
    if command == "submit":
        now = int(time.time() * 1000)
        agent.submit_many(("api", now, json.dumps({"n": n})) for n in range(int(arg)))
        print("submitted", flush=True)
    elif command == "flush":
        print("flushed" if agent.flush(float(arg)) else "not flushed", flush=True)
    elif command == "close":
        agent.close(10)
        print("closed", flush=True)
        break
"""

IDLE = (os.SCHED_IDLE, None)  # any nice value
LOW = (os.SCHED_OTHER, 19)


class Application:
    """The child application process, driven line by line over stdin."""

    def __init__(self, prefix: list[str], journal: Path, endpoint: str) -> None:
        self.journal = journal
        self.process = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-c",
                APPLICATION,
                str(journal),
                endpoint,
                repr(STALL_SECONDS),
            ],
            env={**os.environ, **AWS_TEST_ENV},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        first = self.ask(None)
        if first != "started":
            # Reap it and close its pipes here: an object never returned is never closed, and
            # its pipes would be left to the garbage collector (an unraisable ResourceWarning
            # that fails whichever test is running then).
            self.process.kill()
            self.process.wait(20)
            output, _ = self.process.communicate()  # the rest of what it printed; closes pipes
            raise AssertionError(f"the application did not start: {first}\n{output}")

    def ask(self, command: str | None) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def agent_stats(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.journal / "agent-stats.json").read_text())
        except (OSError, ValueError):
            return {}
        return data

    def agent_pid(self) -> int:
        wait_for(lambda: "pid" in self.agent_stats(), 30, "the agent's first report")
        return int(self.agent_stats()["pid"])

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.ask("close")
            self.process.wait(20)
        finally:
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()


def scheduling(pid: int) -> set[tuple[int, int | None]]:
    """(policy, nice) of every thread of `pid`; the nice value is left out in the idle class
    (it does not count there)."""
    seen: set[tuple[int, int | None]] = set()
    for name in os.listdir(f"/proc/{pid}/task"):
        tid = int(name)
        try:
            policy = os.sched_getscheduler(tid)
            nice = os.getpriority(os.PRIO_PROCESS, tid)
        except (ProcessLookupError, PermissionError):
            continue  # a thread that just ended
        seen.add((policy, None if policy == os.SCHED_IDLE else nice))
    return seen


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_scheduling(pid: int, wanted: tuple[int, int | None], what: str) -> None:
    try:
        wait_for(lambda: scheduling(pid) == {wanted}, 30, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; agent threads: {sorted(scheduling(pid), key=str)}") from None


@pytest.fixture
def journal() -> Iterator[Path]:
    """A journal directory any identity can write (tmp_path's parents are root-only)."""
    directory = Path(tempfile.mkdtemp(prefix="agent-sched-"))
    os.chown(directory, NOBODY, NOBODY)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def identity_prefix(identity: str) -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("the identities are set up from root (setpriv); this run is not root")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to start the agent as another identity")
    no_nice = ["prlimit", "--nice=0:0", "--"]
    if identity == "root":
        return []
    if identity == "root-without-cap-sys-nice":
        return [*no_nice, setpriv, "--bounding-set=-sys_nice", "--inh-caps=-sys_nice", "--"]
    # The user may read any file (CAP_DAC_READ_SEARCH, nothing more): the interpreter, the venv
    # and the clone can sit under directories only root may enter (/root, `mktemp -d`). Reading
    # grants nothing about scheduling, which is what these identities differ in.
    read = "+dac_read_search"
    user = [
        *(setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"),
        *(f"--inh-caps={read}", f"--ambient-caps={read}", "--"),
    ]
    if identity == "user-rlimit-nice-0":
        return [*no_nice, *user]
    assert identity == "user-rlimit-nice-1"
    hard = resource.getrlimit(resource.RLIMIT_NICE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1:
        # Raising the hard limit takes CAP_SYS_RESOURCE, which this container's root lacks;
        # test_low_is_reached_at_rlimit_nice_1_by_raising_nice_first covers the order instead.
        pytest.skip(f"RLIMIT_NICE hard limit is {hard} here and cannot be raised")
    return ["prlimit", "--nice=1:1", "--", *user]


def run_stall(moto: MotoServer, journal: Path, identity: str) -> list[set[Any]]:
    """Keep up, stall (CloudWatch refused), drain: the agent's scheduling at each step."""
    steps: list[set[Any]] = []
    adaptive = identity in ("root", "user-rlimit-nice-1")
    with FaultyProxy(upstream_port=moto.port) as proxy:
        app = Application(identity_prefix(identity), journal, proxy.url)
        try:
            pid = app.agent_pid()
            first = IDLE if adaptive else LOW
            wait_for_scheduling(pid, first, "the agent's scheduling at start")
            steps.append(scheduling(pid))
            proxy.stop()  # connections refused: events wait, no progress
            assert app.ask("submit 500") == "submitted"
            wait_for_scheduling(pid, LOW, "nice 19 once events wait without progress")
            steps.append(scheduling(pid))
            proxy.start()  # the same port again
            assert app.ask("flush 30") == "flushed"
            wait_for_scheduling(pid, first, "the scheduling once drained")
            steps.append(scheduling(pid))
            report = app.agent_stats()["scheduling"]
            assert report["errors"] == 0, report
        finally:
            app.close()
    return steps


@pytest.mark.parametrize(
    "identity",
    ["root", "root-without-cap-sys-nice", "user-rlimit-nice-0", "user-rlimit-nice-1"],
)
def test_the_agent_process_runs_in_the_class_its_privileges_allow(
    moto: MotoServer, journal: Path, identity: str
) -> None:
    steps = run_stall(moto, journal, identity)
    if identity in ("root", "user-rlimit-nice-1"):
        assert steps == [{IDLE}, {LOW}, {IDLE}]
    else:
        # Never the idle class: it could not leave it, and would starve on a busy machine.
        assert steps == [{LOW}, {LOW}, {LOW}]


class FakeKernel:
    """The kernel's rule (kernel/sched/core.c, __sched_setscheduler and can_nice) for a task
    without CAP_SYS_NICE: "Treat SCHED_IDLE as nice 20": leaving the idle class, like lowering
    the nice value, is allowed only if 20 - nice <= RLIMIT_NICE."""

    def __init__(self, rlimit_nice: int) -> None:
        self.rlimit_nice = rlimit_nice
        self.policy = os.SCHED_OTHER
        self.nice = 0

    def sched_setscheduler(self, _tid: int, policy: int, _param: object) -> None:
        leaving_idle = self.policy == os.SCHED_IDLE and policy != os.SCHED_IDLE
        if leaving_idle and 20 - self.nice > self.rlimit_nice:
            raise PermissionError(1, "Operation not permitted")
        self.policy = policy

    def setpriority(self, _which: int, _tid: int, nice: int) -> None:
        if nice < self.nice and 20 - nice > self.rlimit_nice:
            raise PermissionError(1, "Operation not permitted")
        self.nice = nice


def test_low_is_reached_at_rlimit_nice_1_by_raising_nice_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The unprivileged RLIMIT_NICE 1 case on machines that cannot set it up for real."""
    kernel = FakeKernel(rlimit_nice=1)
    monkeypatch.setattr(os, "sched_setscheduler", kernel.sched_setscheduler)
    monkeypatch.setattr(os, "setpriority", kernel.setpriority)
    monkeypatch.setattr(agent_module, "_threads", lambda: [1])
    monkeypatch.setattr(agent_module, "_can_leave_idle", lambda: True)
    scheduling = agent_module._Scheduling("adaptive", stall_seconds=0.0)
    assert (kernel.policy, scheduling.current) == (os.SCHED_IDLE, "idle")
    scheduling.update(waiting=True, progress_at=0.0)
    assert (kernel.policy, kernel.nice, scheduling.current) == (os.SCHED_OTHER, 19, "low")
    scheduling.update(waiting=False, progress_at=0.0)
    assert (kernel.policy, scheduling.current) == (os.SCHED_IDLE, "idle")
    assert scheduling.errors == 0
    assert capsys.readouterr().err == ""


def test_a_refused_switch_is_counted_and_reported_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kernel = FakeKernel(rlimit_nice=0)  # leaving the idle class is never allowed
    monkeypatch.setattr(os, "sched_setscheduler", kernel.sched_setscheduler)
    monkeypatch.setattr(os, "setpriority", kernel.setpriority)
    monkeypatch.setattr(agent_module, "_threads", lambda: [1])
    monkeypatch.setattr(agent_module, "_can_leave_idle", lambda: True)  # wrongly
    scheduling = agent_module._Scheduling("adaptive", stall_seconds=0.0)
    for _ in range(3):
        scheduling.update(waiting=True, progress_at=0.0)
    assert scheduling.current == "idle"
    assert scheduling.report() == {
        "class": "idle",
        "errors": 3,
        "last_error": "cannot switch to low: Operation not permitted",
    }
    assert capsys.readouterr().err.count("agent scheduling: cannot switch to low") == 1
