"""The platform's CloudWatch sink: which group a line goes to and with which timestamp."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from experimentation_platform.observe import REQUEST_LOGGER, cloudwatch_sink
from observability.cloud.shipper import Event


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def submit_many(self, events: Iterable[Event]) -> None:
        self.events.extend(events)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float = 10.0) -> bool:
        return True

    def stats(self) -> object:
        raise NotImplementedError

    def simulate_outage(self, on: bool) -> None:
        return None


def epoch_ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def test_lines_go_to_their_groups_with_their_own_timestamps() -> None:
    shipper = Recorder()
    sink = cloudwatch_sink(shipper)  # type: ignore[arg-type]
    stamps = [
        "2026-11-27T15:00:00.123456Z",
        "2026-11-27T15:00:00.999999Z",  # same second: the cached part must still be right
        "2026-11-27T15:00:01.000001Z",
        "2026-11-27T23:59:59.500000Z",
        "2026-11-28T00:00:00.001000+00:00",  # another form: parsed in full
    ]
    records = [
        (20, {"timestamp": stamps[0], "logger": REQUEST_LOGGER}, b'{"a":1}\n'),
        (20, {"timestamp": stamps[1], "logger": "experimentation_platform.api"}, b'{"b":2}\n'),
        (40, {"timestamp": stamps[2], "logger": "experimentation_platform.api"}, b'{"c":3}\n'),
        (20, {"timestamp": stamps[3], "logger": REQUEST_LOGGER}, b'{"d":4}\n'),
        (20, {"timestamp": stamps[4], "logger": REQUEST_LOGGER}, b'{"e":5}\n'),
    ]
    sink.write(records)
    assert shipper.events == [
        ("api", epoch_ms(stamps[0]), b'{"a":1}'),
        ("services", epoch_ms(stamps[1]), b'{"b":2}'),
        ("services", epoch_ms(stamps[2]), b'{"c":3}'),
        ("errors", epoch_ms(stamps[2]), b'{"c":3}'),  # error level: also in /errors
        ("api", epoch_ms(stamps[3]), b'{"d":4}'),
        ("api", epoch_ms(stamps[4]), b'{"e":5}'),
    ]
