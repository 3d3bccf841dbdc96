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
from datetime import datetime
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from experimentation_platform.storage.db import Database
from experimentation_platform.storage.models import ApiKey, utcnow

__all__ = ["ROLES", "KeyInfo", "KeyStore", "Principal", "Role"]

Role = Literal["admin", "client", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "client", "viewer")
PREFIX = "epk_"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: Role


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What `ep keys list` and GET /api/v1/keys show: never the key nor its hash."""

    id: str
    role: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "role": self.role,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    # Verified keys are remembered briefly so a request does not cost a database read; a key
    # revoked elsewhere (another instance, `ep keys revoke`) stops working within this many
    # seconds (EP_KEY_CACHE_SECONDS). A revocation through this store's own `revoke` is at once.
    CACHE_SECONDS = 30.0
    # Last use is written at most this often per key: an audit trail, not a write per request.
    USE_RECORD_SECONDS = 60.0

    def __init__(self, db: Database, cache_seconds: float | None = None) -> None:
        self.db = db
        self.cache_seconds = self.CACHE_SECONDS if cache_seconds is None else cache_seconds
        self._verified: dict[str, tuple[float, Principal]] = {}
        self._use_recorded: dict[str, float] = {}
        self._ids_verified: set[str] = set()  # ids that authenticated once in this process
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
            self._verified[digest] = (now + self.cache_seconds, principal)
            if len(self._ids_verified) > 100_000:
                self._ids_verified.clear()
            self._ids_verified.add(principal.key_id)
        return principal

    def seen_before(self, key: str) -> bool:
        """Whether the key's id authenticated once in this process (says nothing of the
        secret: the key is still checked, and revocation still applies)."""
        return key.startswith(PREFIX) and key[len(PREFIX) :].split(".", 1)[0] in self._ids_verified

    # --- audit and lifecycle --------------------------------------------------------------
    def use_to_record(self, key_id: str) -> bool:
        """True when this key's last use should be written now (once a minute per key)."""
        now = time.monotonic()
        last = self._use_recorded.get(key_id)
        if last is not None and now - last < self.USE_RECORD_SECONDS:
            return False
        if len(self._use_recorded) > 10_000:
            self._use_recorded.clear()
        self._use_recorded[key_id] = now
        return True

    def record_use(self, key_id: str) -> None:
        """Stamp the key's last use (best effort: an audit write never fails a request)."""
        try:
            with self.db.session() as session:
                session.execute(
                    update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow())
                )
        except SQLAlchemyError:
            self._use_recorded.pop(key_id, None)  # try again at the next use

    def list_keys(self, include_revoked: bool = True) -> list[KeyInfo]:
        with self.db.session() as session:
            query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
            if not include_revoked:
                query = query.where(ApiKey.revoked_at.is_(None))
            rows = session.scalars(query).all()
            return [
                KeyInfo(r.id, r.role, r.name, r.created_at, r.last_used_at, r.revoked_at)
                for r in rows
            ]

    def revoke(self, key_id: str) -> KeyInfo | None:
        """Revoke a key (idempotent; the first revocation time is kept). None: no such key."""
        with self.db.session() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.id == key_id))
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            info = KeyInfo(
                row.id, row.role, row.name, row.created_at, row.last_used_at, row.revoked_at
            )
        with self._lock:  # this process forgets it at once; others within cache_seconds
            for digest, (_, principal) in list(self._verified.items()):
                if principal.key_id == key_id:
                    del self._verified[digest]
        return info
