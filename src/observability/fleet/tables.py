"""The fleet's tables in the observability store: leases (who leads) and the instance registry
(who is alive). Created by the store's migrations (revision 0002)."""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, MetaData, String, Table

__all__ = ["fleet_metadata", "instances_table", "leases_table"]

fleet_metadata = MetaData()

leases_table = Table(
    "observability_leases",
    fleet_metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(160), nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

instances_table = Table(
    "observability_instances",
    fleet_metadata,
    Column("instance", String(160), primary_key=True),
    Column("service", String(100), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(64), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("stopped_at", Float, nullable=True),  # set by a clean stop; NULL and stale = lost
)
