"""Alembic environment of the observability store: runs on the connection `migrate` hands over,
inside one transaction that first takes a lock, so instances starting together serialize their
DDL (PostgreSQL: an advisory lock; SQLite: the store's engine begins IMMEDIATE transactions)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from observability.store import serialize_migrations

config = context.config
connection: Connection = config.attributes["connection"]
VERSION_TABLE = "observability_alembic_version"  # the platform's own Alembic has alembic_version
MIGRATION_LOCK = 0x6F627376  # "obsv": one advisory lock key for the store's migrations

serialize_migrations(connection, MIGRATION_LOCK)
context.configure(connection=connection, version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
