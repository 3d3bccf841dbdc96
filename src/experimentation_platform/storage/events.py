"""Conversion events and experiment results."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select

from experimentation_platform.domain.stats import sample_ratio_mismatch, wilson_interval
from experimentation_platform.errors import InvalidInput
from experimentation_platform.storage.db import Database
from experimentation_platform.storage.experiments import ExperimentStore
from experimentation_platform.storage.models import Event, Experiment, Exposure

__all__ = ["UNEXPOSED", "EventStore"]

UNEXPOSED = "unexposed"  # the variant label of an event from a user never exposed


class EventStore:
    def __init__(self, db: Database, experiments: ExperimentStore) -> None:
        self.db = db
        self.experiments = experiments

    def ingest(self, events: Sequence[dict[str, Any]]) -> int:
        """Insert a batch atomically: every event or none."""
        keys = {e["experiment_key"] for e in events if e.get("experiment_key")}
        if keys:
            with self.db.session() as session:
                known = set(session.scalars(select(Experiment.key).where(Experiment.key.in_(keys))))
            for index, event in enumerate(events):
                key = event.get("experiment_key")
                if key and key not in known:
                    raise InvalidInput(
                        f"unknown experiment '{key}'", field=f"events[{index}].experiment_key"
                    )
        now = datetime.now(UTC)
        rows = [
            {
                "user_id": e["user_id"],
                "name": e["name"],
                "experiment_key": e.get("experiment_key"),
                "value": e.get("value"),
                "timestamp": (e.get("timestamp") or now).astimezone(UTC),
                "received_at": now,
            }
            for e in events
        ]
        with self.db.session() as session:
            session.execute(insert(Event), rows)
        return len(rows)

    def conversions_by_variant(
        self, events: Sequence[dict[str, Any]]
    ) -> dict[tuple[str, str], int]:
        """Events attributed to an experiment, counted per (experiment, variant): the variant
        the user was exposed to, `UNEXPOSED` for a user never exposed. One query per batch."""
        attributed = [
            (e["experiment_key"], e["user_id"]) for e in events if e.get("experiment_key")
        ]
        if not attributed:
            return {}
        keys = {key for key, _ in attributed}
        users = {user for _, user in attributed}
        with self.db.session() as session:
            exposed = {
                (key, user): variant
                for key, user, variant in session.execute(
                    select(Experiment.key, Exposure.user_id, Exposure.variant)
                    .join(Exposure, Exposure.experiment_id == Experiment.id)
                    .where(Experiment.key.in_(keys), Exposure.user_id.in_(users))
                ).all()
            }
        counts: dict[tuple[str, str], int] = {}
        for key, user in attributed:
            group = (key, exposed.get((key, user), UNEXPOSED))
            counts[group] = counts.get(group, 0) + 1
        return counts

    def results(self, key: str, event_name: str | None) -> dict[str, Any]:
        experiment = self.experiments.get(key)
        conversion_filter = [
            Event.user_id == Exposure.user_id,
            Event.timestamp >= Exposure.created_at,
            or_(Event.experiment_key == key, Event.experiment_key.is_(None)),
        ]
        if event_name:
            conversion_filter.append(Event.name == event_name)
        with self.db.session() as session:
            exposures = dict(
                session.execute(
                    select(Exposure.variant, func.count(Exposure.id))
                    .where(Exposure.experiment_id == experiment.id)
                    .group_by(Exposure.variant)
                ).all()
            )
            conversions = {
                variant: (int(users), float(total or 0.0))
                for variant, users, total in session.execute(
                    select(
                        Exposure.variant,
                        func.count(func.distinct(Event.user_id)),
                        func.sum(Event.value),
                    )
                    .join(Event, and_(*conversion_filter))
                    .where(Exposure.experiment_id == experiment.id)
                    .group_by(Exposure.variant)
                ).all()
            }
        variants = []
        for variant in experiment.variants:
            exposed = int(exposures.get(variant["key"], 0))
            users, value = conversions.get(variant["key"], (0, 0.0))
            low, high = wilson_interval(min(users, exposed), exposed)
            variants.append(
                {
                    "key": variant["key"],
                    "weight": variant["weight"],
                    "exposures": exposed,
                    "conversions": users,
                    "conversion_rate": users / exposed if exposed else 0.0,
                    # Wilson score interval, 95%: honest for small samples and rates near 0.
                    "conversion_rate_ci": {"low": low, "high": high, "confidence": 0.95},
                    "value_sum": value,
                }
            )
        srm = sample_ratio_mismatch(
            [v["exposures"] for v in variants], [v["weight"] for v in variants]
        )
        return {
            "experiment_key": key,
            "status": experiment.status,
            "event": event_name,
            "variants": variants,
            "sample_ratio_mismatch": {
                "chi_squared": srm.statistic,
                "p_value": srm.p_value,
                "mismatch": srm.mismatch,
                "threshold": 0.001,
            },
        }
