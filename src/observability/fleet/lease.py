"""A lease in the shared store: at most one holder at a time, for at most `ttl_s` unless renewed.

The holder renews every `ttl_s / 3`; a holder that dies stops renewing and the lease moves to
another instance within `ttl_s` (plus one renewal period). Acquiring and renewing are the same
single statement, atomic on PostgreSQL and SQLite alike: an upsert that only takes the row when
it is ours already or has expired. Expiry is judged by the clock of the instance that asks, so
hosts' clocks must agree to well within `ttl_s` (NTP does).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from observability.fleet.tables import leases_table

__all__ = ["Lease"]


class Lease:
    def __init__(
        self,
        engine: Engine,
        name: str,
        holder: str,
        *,
        ttl_s: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.engine = engine
        self.name = name
        self.holder = holder
        self.ttl_s = ttl_s
        self._clock = clock

    def try_acquire(self) -> bool:
        """Take or renew the lease; True while we hold it."""
        now = self._clock()
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(leases_table).values(
            name=self.name, holder=self.holder, acquired_at=now, expires_at=now + self.ttl_s
        )
        current = leases_table.c
        statement = statement.on_conflict_do_update(
            index_elements=[current.name],
            set_={
                "holder": statement.excluded.holder,
                "expires_at": statement.excluded.expires_at,
                # A renewal keeps the time it was first acquired; a takeover starts it anew.
                "acquired_at": case(
                    (current.holder == statement.excluded.holder, current.acquired_at),
                    else_=statement.excluded.acquired_at,
                ),
            },
            where=(current.holder == self.holder) | (current.expires_at < now),
        ).returning(current.holder)
        with self.engine.begin() as conn:
            row = conn.execute(statement).first()
        return row is not None and row.holder == self.holder

    def holder_now(self) -> tuple[str, float] | None:
        """(holder, expires_at) of a lease that has not expired, else None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(leases_table.c.holder, leases_table.c.expires_at).where(
                    leases_table.c.name == self.name
                )
            ).first()
        if row is None or row.expires_at < self._clock():
            return None
        return str(row.holder), float(row.expires_at)

    def release(self) -> None:
        """Give the lease up at once (a clean stop: the next holder need not wait)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(leases_table).where(
                    (leases_table.c.name == self.name) & (leases_table.c.holder == self.holder)
                )
            )
