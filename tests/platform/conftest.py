"""Every platform API test runs on each storage backend: SQLite or PostgreSQL, with the
in-process cache or Redis (the CI matrix of the Foundation issue, inside one pytest run)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from experimentation_platform.settings import Settings
from tests.support.platform import (
    Instance,
    backend_settings,
    postgres_database,
    redis_flush_prefix,
    running_instance,
)

BACKENDS = ["sqlite", "sqlite+redis", "postgresql", "postgresql+redis"]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a fresh platform on one backend (PostgreSQL: a fresh database per test)."""
    name: str = request.param
    prefix = f"ep:test:{secrets.token_hex(4)}:"
    if name.startswith("postgresql"):
        with postgres_database() as url:
            yield backend_settings(tmp_path, url, name.endswith("+redis"), prefix)
    else:
        url = f"sqlite:///{tmp_path / 'platform.db'}"
        yield backend_settings(tmp_path, url, name.endswith("+redis"), prefix)
    if name.endswith("+redis"):
        redis_flush_prefix(prefix)


@pytest.fixture
def api(backend: Settings) -> Iterator[Instance]:
    with running_instance(backend) as instance:
        yield instance


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Instance]:
    """For tests whose subject does not depend on the storage backend."""
    url = f"sqlite:///{tmp_path / 'platform.db'}"
    with running_instance(backend_settings(tmp_path, url, False, "unused:")) as instance:
        yield instance
