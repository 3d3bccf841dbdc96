"""A full disk under the log file: on a real 256 KiB tmpfs, not a mock.

Issue 14: 3,000 requests on a full 2 MB filesystem left `log_events_dropped_total` at 0, and
after space returned one torn line was merged with the next.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from observability.logging import LogPipeline, RotatingFileSink
from observability.logging.sinks import MemorySink
from tests.support.filesystems import fill, small_filesystem


def _lines(path: Path) -> list[dict[str, object]]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "the file ends inside a line"
    return [orjson.loads(line) for line in data.splitlines()]


def test_lines_that_do_not_fit_are_counted_whole_and_writing_resumes() -> None:
    with small_filesystem(256) as root:
        logs = root / "log"
        sink = RotatingFileSink(logs, "t")
        memory = MemorySink()
        pipeline = LogPipeline([sink, memory], flush_interval=0.01)
        try:
            ballast = fill(root, leave_bytes=20_000)  # room for ~100 of our lines
            for n in range(2_000):
                pipeline.submit(20, {"event": "filling", "n": n, "pad": "x" * 120})
                if n % 50 == 0:
                    pipeline.flush()
            pipeline.flush()
            written = _lines(sink.path)  # whole lines only, every one parses
            dropped = pipeline.dropped["sink_failed_file"]
            assert 0 < len(written) < 2_000
            assert len(written) + dropped == 2_000  # each line is either in the file or counted
            assert [line["n"] for line in written] == list(range(len(written)))
            assert pipeline.sink_errors["file"] > 0
            assert len(memory.lines) == 2_000  # the other sink lost nothing

            ballast.unlink()  # space comes back: the next lines are written, on lines of their own
            for n in range(2_000, 2_010):
                pipeline.submit(20, {"event": "resumed", "n": n})
            pipeline.flush()
            after = _lines(sink.path)
            assert [line["n"] for line in after[len(written) :]] == list(range(2_000, 2_010))
            assert pipeline.dropped["sink_failed_file"] == dropped  # nothing more lost
        finally:
            pipeline.close()
