"""The observability store's migrations (what `ep db upgrade` and every start run), the leader
lease and the instance registry, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from observability.alerting.notifiers.log import notification_log_metadata
from observability.alerting.silences import silences_metadata
from observability.alerting.state import state_metadata
from observability.errors.store import METADATA as errors_metadata
from observability.fleet.lease import Lease
from observability.fleet.registry import InstanceRegistry
from observability.fleet.tables import fleet_metadata
from observability.metrics.history import history_metadata
from observability.store import ObservabilityStore, head_revision
from tests.support.platform import postgres_database

METADATAS = (
    errors_metadata,
    state_metadata,
    silences_metadata,
    notification_log_metadata,
    history_metadata,
    fleet_metadata,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'observability.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def store(store_url: str) -> Iterator[ObservabilityStore]:
    opened = ObservabilityStore.open(store_url)
    opened.migrate()
    yield opened
    opened.dispose()


def test_the_migrations_build_exactly_the_tables_the_code_defines(
    store: ObservabilityStore,
) -> None:
    combined = sa.MetaData()
    for metadata in METADATAS:
        for table in metadata.tables.values():
            table.to_metadata(combined)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn)
        differences = [
            d
            for d in compare_metadata(context, combined)
            if not (d[0] == "remove_table" and d[1].name == "observability_alembic_version")
        ]
    assert differences == []
    assert store.revision() == head_revision()


def test_a_store_of_an_earlier_release_is_brought_to_the_current_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'observability.db'}"
    legacy = ObservabilityStore.open(url)
    for metadata in METADATAS[:-1]:  # what create_schema() used to make, without a version
        metadata.create_all(legacy.engine)
    assert legacy.revision() is None
    legacy.migrate()
    assert legacy.revision() == head_revision()
    assert "observability_instances" in sa.inspect(legacy.engine).get_table_names()
    legacy.dispose()


_MIGRATE = (
    "import sys; from observability.store import ObservabilityStore; "
    "s = ObservabilityStore.open(sys.argv[1]); s.migrate(); print(s.revision())"
)


def test_instances_starting_together_on_a_fresh_postgresql_take_turns() -> None:
    """Four processes migrate one fresh database at the same moment (the startup race that
    crashed an instance with a UniqueViolation on pg_type): all succeed."""
    with postgres_database() as url:
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", _MIGRATE, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        results = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 0, 0, 0], [err for _, err in results]
        assert [out.strip() for out, _ in results] == [head_revision()] * 4


def test_one_holder_at_a_time_and_a_dead_holders_lease_moves(store: ObservabilityStore) -> None:
    now = [1000.0]
    a = Lease(store.engine, "leader", "a", ttl_s=10, clock=lambda: now[0])
    b = Lease(store.engine, "leader", "b", ttl_s=10, clock=lambda: now[0])
    assert a.try_acquire()
    assert not b.try_acquire()
    now[0] += 6
    assert a.try_acquire()  # a renewal
    assert not b.try_acquire()
    now[0] += 10.1  # a stopped renewing: its lease ended
    assert b.try_acquire()
    assert not a.try_acquire()
    assert b.holder_now() == ("b", now[0] + 10)
    b.release()
    assert b.holder_now() is None
    assert a.try_acquire()


def test_the_registry_tells_up_stopped_and_lost_apart(store: ObservabilityStore) -> None:
    now = [5000.0]

    def member(name: str) -> InstanceRegistry:
        return InstanceRegistry(
            store.engine, instance=name, service="api", heartbeat_s=10, clock=lambda: now[0]
        )

    alive, graceful, killed = member("alive"), member("graceful"), member("killed")
    other_service = InstanceRegistry(
        store.engine, instance="x", service="billing", clock=lambda: now[0]
    )
    for m in (alive, graceful, killed, other_service):
        m.beat()
    now[0] += 20
    alive.beat()
    graceful.say_goodbye()
    now[0] += 15  # killed: last seen 35 s ago, three heartbeats missed
    states = {i.instance: i.state for i in alive.instances()}
    assert states == {"alive": "up", "graceful": "stopped", "killed": "lost"}
    gauges = {
        (s.name, tuple(s.labels.items())): s.value for f in alive.collect() for s in f.samples
    }
    assert gauges[("instances_up", ())] == 1
    assert gauges[("instances_lost", ())] == 1
    assert gauges[("instance_up", (("instance", "killed"),))] == 0
    assert ("instance_up", (("instance", "graceful"),)) not in gauges
    now[0] += 3600  # an hour later the lost one is forgotten
    alive.beat()
    assert [i.instance for i in alive.instances()] == ["alive"]
