"""Tests of the error-tracking core. Helpers shared by the modules of this package live here."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg

PG_ADMIN = "host=127.0.0.1 port=5432 user=root dbname=test"
CANARIES = ("CANARY-7f3c-PASSWORD", "CANARY-91ab-TOKEN", "CANARY-55de-BODY")


def pg_url(name: str) -> str:
    return f"postgresql+psycopg://root@127.0.0.1:5432/{name}"


def create_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    """Drop even with connections open (an outage, from the store's point of view)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def pg_database(prefix: str) -> Iterator[str]:
    """A uniquely named PostgreSQL database for one test session; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    create_database(name)
    try:
        yield name
    finally:
        drop_database(name)


def canary_mask(value: Any) -> Any:
    """A stand-in masking policy: denylisted keys and the canary values are replaced."""
    if isinstance(value, str):
        for canary in CANARIES:
            value = value.replace(canary, "[MASKED]")
        return value
    if isinstance(value, dict):
        return {
            k: "[MASKED]"
            if str(k).lower() in {"password", "authorization", "cookie", "token"}
            else canary_mask(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [canary_mask(v) for v in value]
    return value
