"""The platform's CloudWatch sink: one batch of lines per write, counted with error copies, and
the shipper configured to route the platform's request lines to /api."""

from __future__ import annotations

from pathlib import Path

from experimentation_platform.settings import load_settings
from experimentation_platform.telemetry.wiring import observability_config
from observability import Observability
from observability.cloud.agent import ShippingAgent
from observability.cloud.sink import cloudwatch_sink
from observability.core import REQUEST_LOGGER


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[bytes, int]] = []

    def submit_lines(self, lines: bytes, events: int) -> None:
        self.batches.append((lines, events))


def test_a_write_is_one_batch_of_the_rendered_lines() -> None:
    shipper = Recorder()
    sink = cloudwatch_sink(shipper)  # type: ignore[arg-type]
    records = [
        (20, {"logger": REQUEST_LOGGER}, b'{"a":1}\n'),
        (40, {"logger": "experimentation_platform.api"}, b'{"b":2}\n'),
        (50, {"logger": "experimentation_platform.api"}, b'{"c":3}\n'),
    ]
    sink.write(records)
    # Three lines; the error and the critical one also go to /errors: five events.
    assert shipper.batches == [(b'{"a":1}\n{"b":2}\n{"c":3}\n', 5)]


def test_the_platform_ships_through_the_agent_routing_its_request_logger(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        var_dir=tmp_path, cloudwatch_enabled=True, log_to_stdout=False, alerts_enabled=False
    )
    observability = Observability(observability_config(settings))
    try:
        shipper = observability.shipper
        assert isinstance(shipper, ShippingAgent)
        assert shipper.config.request_logger == REQUEST_LOGGER
        assert shipper.config.journal_dir == tmp_path / "cloudwatch" / "worker-0"
    finally:
        observability.close(5)
