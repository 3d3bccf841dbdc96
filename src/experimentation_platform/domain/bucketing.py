"""Deterministic bucketing: the same user lands in the same bucket everywhere, forever.

Algorithm (documented in docs/assignment.md):
  bucket(purpose, salt, user_id) = first 8 bytes of SHA-256("{purpose}:{salt}:{user_id}"),
                                    read big-endian, modulo 10,000.
- `salt` is a random string stored with the experiment (or flag) when it is created, so two
  experiments never correlate, and every instance and every restart computes the same bucket.
- Two independent purposes: "allocation" decides whether a user is in the experiment at all
  (bucket < allocation% x 100), "variant" picks the variant by cumulative weights
  (weight% x 100 buckets each). Independence means changing the allocation never reshuffles
  who gets which variant.
- SHA-256 rather than a faster non-cryptographic hash because it is in the standard library on
  every platform and every language an SDK might be written in; it costs ~1 us here.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

__all__ = ["BUCKETS", "bucket", "new_salt", "pick_variant"]

BUCKETS = 10_000


def new_salt() -> str:
    return secrets.token_hex(8)


def bucket(purpose: str, salt: str, user_id: str) -> int:
    digest = hashlib.sha256(f"{purpose}:{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def pick_variant(variants: Sequence[tuple[str, int]], bucket_value: int) -> str:
    """Map a bucket in [0, 10,000) to a variant; weights are integer percents summing to 100."""
    upper = 0
    for key, weight in variants:
        upper += weight * (BUCKETS // 100)
        if bucket_value < upper:
            return key
    return variants[-1][0]  # unreachable when weights sum to 100; kept total for safety
