"""The process's memory as a share of its budget: the cgroup v2 limit found the way the kernel
applies it, the gauge in single- and multi-process layouts, and the platform's default budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from experimentation_platform import settings as platform_settings
from experimentation_platform.settings import DEFAULT_MEMORY_BUDGET_MB, load_settings
from observability.metrics.system import (
    PROCESS_MEMORY,
    ProcessSampler,
    RuntimeMetrics,
    SystemCollector,
    cgroup_memory_limit,
)

MiB = 1024 * 1024


def _cgroup(tmp_path: Path, membership: str, limits: dict[str, str]) -> tuple[Path, Path]:
    """A fake /proc/self/cgroup and /sys/fs/cgroup tree with memory.max files."""
    proc = tmp_path / "cgroup"
    proc.write_text(membership, encoding="utf-8")
    root = tmp_path / "fs"
    root.mkdir()
    for path, value in limits.items():
        folder = root / path.strip("/")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "memory.max").write_text(value + "\n", encoding="utf-8")
    return proc, root


def test_a_container_limit_is_read_from_memory_max(tmp_path: Path) -> None:
    # A container with its own cgroup namespace sees itself at "/".
    proc, root = _cgroup(tmp_path, "0::/\n", {"/": str(512 * MiB)})
    assert cgroup_memory_limit(proc, root) == 512 * MiB


def test_the_tightest_limit_on_the_path_binds(tmp_path: Path) -> None:
    proc, root = _cgroup(
        tmp_path,
        "0::/system.slice/ep.service\n",
        {"/system.slice": str(256 * MiB), "/system.slice/ep.service": "max"},
    )
    assert cgroup_memory_limit(proc, root) == 256 * MiB


@pytest.mark.parametrize(
    ("membership", "limits"),
    [
        ("0::/user.slice\n", {"/user.slice": "max"}),  # cgroup v2 without a limit
        ("0::/\n", {}),  # the root cgroup has no memory.max
        ("4:memory:/docker/abc\n1:cpu:/\n", {"/": str(MiB)}),  # cgroup v1 only: not read
    ],
)
def test_no_limit_is_none(tmp_path: Path, membership: str, limits: dict[str, str]) -> None:
    proc, root = _cgroup(tmp_path, membership, limits)
    assert cgroup_memory_limit(proc, root) is None


def test_unreadable_cgroup_files_are_none(tmp_path: Path) -> None:
    assert cgroup_memory_limit(tmp_path / "missing", tmp_path) is None


def test_the_collector_reports_resident_memory_over_the_budget() -> None:
    registry = CollectorRegistry()
    registry.register(SystemCollector(memory_budget=1024 * MiB))
    rss = registry.get_sample_value("process_resident_memory_bytes")
    share = registry.get_sample_value(PROCESS_MEMORY)
    assert rss is not None
    assert share is not None
    assert share == pytest.approx(rss / (1024 * MiB), rel=0.05)
    unbudgeted = CollectorRegistry()
    unbudgeted.register(SystemCollector())
    assert unbudgeted.get_sample_value(PROCESS_MEMORY) is None


def test_multi_process_workers_write_their_share() -> None:
    registry = CollectorRegistry()
    runtime = RuntimeMetrics(registry, multiprocess=True, memory_budget=512 * MiB)
    assert isinstance(runtime.sampler, ProcessSampler)
    runtime.sampler.sample()
    rss = registry.get_sample_value("process_resident_memory_bytes")
    share = registry.get_sample_value(PROCESS_MEMORY)
    assert rss is not None
    assert share == pytest.approx(rss / (512 * MiB))


def test_the_platform_budget_setting_and_its_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(var_dir=tmp_path, memory_budget_mb=300).resolved_memory_budget_bytes == (
        300 * MiB
    )
    monkeypatch.setattr(platform_settings, "cgroup_memory_limit", lambda: 768 * MiB)
    assert load_settings(var_dir=tmp_path).resolved_memory_budget_bytes == 768 * MiB
    monkeypatch.setattr(platform_settings, "cgroup_memory_limit", lambda: None)
    fallback = load_settings(var_dir=tmp_path).resolved_memory_budget_bytes
    assert fallback == DEFAULT_MEMORY_BUDGET_MB * MiB
    with pytest.raises(platform_settings.SettingsError, match="EP_MEMORY_BUDGET_MB"):
        load_settings(memory_budget_mb=-1)
