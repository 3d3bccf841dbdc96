"""Fixtures shared by the whole suite. Area-specific fixtures live next to their tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog

import observability.logging
from tests.support.servers import AWS_TEST_ENV, MotoServer, RecordingHTTPServer


@pytest.fixture(autouse=True)
def _fresh_logging_state() -> Iterator[None]:
    """Logging is process-global: every test starts and ends with none configured."""
    yield
    observability.logging.reset()
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """One moto server for the session; tests that need a clean slate call `moto.reset()`."""
    for key, value in AWS_TEST_ENV.items():
        os.environ.setdefault(key, value)
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[RecordingHTTPServer]:
    """A loopback HTTP receiver recording what webhooks (Slack, PagerDuty, Sentry) send."""
    with RecordingHTTPServer() as server:
        yield server
