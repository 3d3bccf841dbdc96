"""Local log files: rotation by size and by age, gzip, retention, several writing processes."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import time
from pathlib import Path

from observability.logging import RotatingFileSink


def _records(start: int, count: int, pad: int = 80) -> list[tuple[int, dict[str, object], bytes]]:
    return [
        (20, {}, json.dumps({"n": n, "pad": "x" * pad}).encode() + b"\n")
        for n in range(start, start + count)
    ]


def _all_lines(directory: Path) -> list[dict[str, object]]:
    lines: list[bytes] = []
    for path in sorted(directory.glob("platform*.log*")):
        if path.name.endswith(".partial"):
            continue
        data = path.read_bytes()
        lines += (gzip.decompress(data) if path.suffix == ".gz" else data).splitlines()
    return [json.loads(line) for line in lines]


def test_rotation_by_size_gzips_and_keeps_every_line(tmp_path: Path) -> None:
    sink = RotatingFileSink(tmp_path, max_bytes=2_000)
    for batch in range(20):
        sink.write(_records(batch * 10, 10))
    sink.close()  # waits for compression
    rotated = sorted(tmp_path.glob("platform.*.log.gz"))
    assert len(rotated) >= 5
    assert not list(tmp_path.glob("platform.*.log"))  # every rotated file compressed
    assert all(p.stat().st_size < 2_000 for p in rotated)
    assert sorted(line["n"] for line in _all_lines(tmp_path)) == list(range(200))


def test_rotation_by_age_and_retention(tmp_path: Path) -> None:
    now = [time.time()]
    sink = RotatingFileSink(tmp_path, rotate_seconds=3600, retention_days=1, clock=lambda: now[0])
    sink.write(_records(0, 3))
    now[0] += 1800
    sink.write(_records(3, 3))
    assert not list(tmp_path.glob("platform.*.log*"))  # half an hour: no rotation yet
    now[0] += 1801
    sink.write(_records(6, 3))
    sink.wait_for_compression()
    (old,) = tmp_path.glob("platform.*.log.gz")
    assert old.name.startswith("platform.2")  # stamped with the UTC time of rotation
    os.utime(old, (now[0] - 2 * 86400, now[0] - 2 * 86400))  # make it two days old
    now[0] += 3601
    sink.write(_records(9, 1))  # the next rotation applies the retention
    sink.close()
    assert not old.exists()
    assert len(list(tmp_path.glob("platform.*.log.gz"))) == 1


def _writer(directory: str, worker: int, batches: int) -> None:
    sink = RotatingFileSink(Path(directory), max_bytes=20_000)
    for batch in range(batches):
        sink.write(_records(worker * 100_000 + batch * 20, 20))
    sink.close()


def test_several_processes_share_one_file_without_torn_lines(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(tmp_path), w, 100)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    deadline = time.monotonic() + 30
    while list(tmp_path.glob("platform.*.log")) and time.monotonic() < deadline:
        time.sleep(0.1)  # compression threads of exited processes are daemons: may be cut
    numbers = sorted(int(line["n"]) for line in _all_lines(tmp_path))  # every line parses
    expected = sorted(w * 100_000 + n for w in range(4) for n in range(2_000))
    assert numbers == expected
    assert len(list(tmp_path.glob("platform.*.log*"))) >= 4  # they rotated, and agreed on it
