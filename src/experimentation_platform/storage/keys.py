"""API keys: created once, shown once, stored as a SHA-256 hash, identified by a public id.

Format: `epk_<id>.<secret>` where `id` is 12 hex characters (safe to log, it names the caller)
and `secret` 32 URL-safe characters. Keys are random with 192 bits of entropy, so a plain
SHA-256 (not a slow password hash) is the right storage: nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from experimentation_platform.storage.db import Database
from experimentation_platform.storage.models import ApiKey

__all__ = ["KeyStore", "Principal", "Role"]

Role = Literal["admin", "client"]
PREFIX = "epk_"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: Role


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    # Verified keys are remembered briefly so a request does not cost a database read;
    # a revoked key stops working within this many seconds.
    CACHE_SECONDS = 30.0

    def __init__(self, db: Database) -> None:
        self.db = db
        self._verified: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def create(self, role: Role, name: str = "") -> tuple[str, str]:
        """Return (key_id, full key). The full key is never stored nor shown again."""
        key_id = secrets.token_hex(6)
        key = f"{PREFIX}{key_id}.{secrets.token_urlsafe(24)}"
        with self.db.session() as session:
            session.add(ApiKey(id=key_id, key_hash=_hash(key), role=role, name=name))
        return key_id, key

    def cached(self, key: str) -> Principal | None:
        """The principal of a recently verified key, without I/O (None: ask authenticate)."""
        cached = self._verified.get(_hash(key))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return None

    def authenticate(self, key: str) -> Principal | None:
        if not key.startswith(PREFIX) or "." not in key or len(key) > 200:
            return None
        digest = _hash(key)
        now = time.monotonic()
        with self._lock:
            cached = self._verified.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        key_id = key[len(PREFIX) :].split(".", 1)[0]
        try:
            with self.db.session() as session:
                row = session.scalar(select(ApiKey).where(ApiKey.id == key_id))
        except OperationalError:
            # Database down: a key verified before still works (so an operator can reach the
            # ops endpoints that end an outage); a key never seen does not.
            if cached is not None:
                return cached[1]
            raise
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.key_hash, digest):
            return None
        principal = Principal(row.id, row.role)  # type: ignore[arg-type]
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[digest] = (now + self.CACHE_SECONDS, principal)
        return principal
