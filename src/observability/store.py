"""`ObservabilityStore`: one database for everything the toolkit keeps between restarts.

Error groups and occurrences, alert state, silences, the notification log and the per-minute
metric history share one engine (SQLite under the data directory by default, or PostgreSQL).
Each part keeps its own tables and its own class; this module opens the engine once, brings the
schema to the current revision with the store's own Alembic migrations (`migrate()`, safe when
several instances start together: they serialize on a lock), and hands the parts out.

Earlier releases called the SQLite file `errors.db` although it held all of the above:
`open()` renames it (with its WAL files) to `observability.db` when only the old one exists.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from observability.alerting.notifiers.log import NotificationLog
from observability.alerting.silences import SilenceStore
from observability.alerting.state import StateStore
from observability.errors.store import ErrorStore
from observability.metrics.history import MetricHistory

__all__ = [
    "LEGACY_SQLITE_NAME",
    "MIGRATIONS_DIR",
    "ObservabilityStore",
    "migrate_legacy_sqlite",
    "serialize_migrations",
]

LEGACY_SQLITE_NAME = "errors.db"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class ObservabilityStore:
    """The parts over one engine. `create_schema()` is idempotent and safe at every start."""

    def __init__(self, errors: ErrorStore, *, instance: str = "local") -> None:
        self.engine = errors.engine
        self.errors = errors
        self.alerts = StateStore(self.engine)
        self.silences = SilenceStore(self.engine)
        self.notifications = NotificationLog(engine=self.engine)
        self.history = MetricHistory(self.engine, instance=instance)

    @classmethod
    def open(cls, url: str, *, instance: str = "local") -> ObservabilityStore:
        """The store at `url` (``sqlite:///path/observability.db`` or ``postgresql+psycopg://``);
        a SQLite file's directory is created."""
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            path = Path(parsed.database)
            path.parent.mkdir(parents=True, exist_ok=True)
            migrate_legacy_sqlite(path)
        return cls(ErrorStore.from_url(url), instance=instance)

    def migrate(self, revision: str = "head") -> None:
        """Bring every table to `revision` (idempotent). Instances that start together take
        turns: the first migrates, the others find the schema current."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def revision(self) -> str | None:
        """The schema's current revision (None before the first migration)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": "observability_alembic_version"}
            )
            return context.get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()


def head_revision() -> str:
    """The newest migration this release ships (what `migrate()` brings a store to)."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None, "the observability migrations have one head"
    return head


def migrate_legacy_sqlite(path: Path) -> bool:
    """Rename `errors.db` (and its -wal/-shm files) beside `path` to `path`'s name when only
    the legacy file exists. True when it renamed."""
    legacy = path.with_name(LEGACY_SQLITE_NAME)
    if path.exists() or not legacy.exists() or legacy == path:
        return False
    for suffix in ("-wal", "-shm"):
        side = legacy.with_name(legacy.name + suffix)
        if side.exists():
            side.rename(path.with_name(path.name + suffix))
    legacy.rename(path)
    return True


def serialize_migrations(connection: sa.Connection, key: int) -> None:
    """Make instances that migrate one database at once take turns, for the rest of this
    transaction: a PostgreSQL advisory lock (SQLite serializes on its write lock, which the
    store's engine takes at BEGIN). Without it, two `CREATE TABLE` race in the catalog."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
