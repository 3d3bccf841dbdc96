"""The fleet's tables in the observability store: leases (who leads), the instance registry
(who is alive) and the recent fine-grained rollups every instance publishes (what the fleet did
in the last hour). Created by the store's migrations (revisions 0002 and 0003)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

__all__ = ["fleet_metadata", "instances_table", "leases_table", "rollups_table"]

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

rollups_table = Table(
    "observability_fleet_rollups",
    fleet_metadata,
    Column("service", String(100), primary_key=True),
    Column("instance", String(160), primary_key=True),
    Column("bucket_start", BigInteger, primary_key=True),
    Column("data", Text, nullable=False),  # MinuteRollup.to_dict() of the bucket, as JSON
    Index("ix_observability_fleet_rollups_bucket", "service", "bucket_start"),
)
