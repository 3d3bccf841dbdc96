"""Baseline: the tables the store held before it had migrations (errors, alert state,
silences, notification log, metric history).

A baseline creates what is missing from the tables' definitions of that time (stores created by
earlier releases already have them); every later revision spells its changes out.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from alembic import op

from observability.alerting.notifiers.log import notification_log_metadata
from observability.alerting.silences import silences_metadata
from observability.alerting.state import state_metadata
from observability.errors.store import METADATA as errors_metadata
from observability.metrics.history import history_metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for metadata in (
        errors_metadata,
        state_metadata,
        silences_metadata,
        notification_log_metadata,
        history_metadata,
    ):
        metadata.create_all(bind, checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not downgraded")
