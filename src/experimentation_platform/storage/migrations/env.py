"""Alembic environment: runs on the connection handed over by `storage.db.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from experimentation_platform.storage.models import Base
from observability.store import serialize_migrations

config = context.config
connection: Connection | None = config.attributes.get("connection")


MIGRATION_LOCK = 0x65706C74  # "eplt": instances starting together take turns


def _run(conn: Connection) -> None:
    serialize_migrations(conn, MIGRATION_LOCK)
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # plain `alembic` command line use
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
