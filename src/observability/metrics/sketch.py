"""A small mergeable quantile sketch with a relative-error guarantee (DDSketch-style).

Why hand-written: the windows need a sketch that is cheap to add to on the request path,
mergeable across time slots and serialisable to a compact dict for per-minute rollups. The
maintained Python DDSketch package is not a dependency of this project, and the algorithm is
about a hundred lines, so we keep our own.

How it works: a positive value ``x`` falls into bucket ``k = ceil(log(x) / log(gamma))`` with
``gamma = (1 + alpha) / (1 - alpha)``; bucket ``k`` covers ``(gamma**(k-1), gamma**k]`` and is
represented by ``2 * gamma**k / (gamma + 1)``, which is within ``alpha`` (relative) of every value
in the bucket. A quantile is therefore within ``alpha`` of the exact sample at the same rank.
Values with ``abs(x) <= min_value`` go to a zero bucket; negative values use a mirrored store.
When a store exceeds ``max_buckets`` the buckets nearest zero are collapsed, so only the low
quantiles lose accuracy (latency alerts care about the high ones).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_RELATIVE_ACCURACY", "QuantileSketch"]

DEFAULT_RELATIVE_ACCURACY = 0.01
_DEFAULT_MIN_VALUE = 1e-9
_DEFAULT_MAX_BUCKETS = 2048
_FORMAT_VERSION = 1


class QuantileSketch:
    """Log-bucketed quantile sketch; ``quantile(q)`` is within ``relative_accuracy`` of exact.

    Not thread-safe by itself: the owner (``RollingWindows``) serialises access.
    """

    __slots__ = (
        "_gamma",
        "_inv_log_gamma",
        "_max_buckets",
        "_min_value",
        "_neg",
        "_pos",
        "count",
        "max",
        "min",
        "relative_accuracy",
        "sum",
        "zero_count",
    )

    def __init__(
        self,
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
        *,
        min_value: float = _DEFAULT_MIN_VALUE,
        max_buckets: int = _DEFAULT_MAX_BUCKETS,
    ) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError("relative_accuracy must be in (0, 1)")
        if not min_value > 0.0:
            raise ValueError("min_value must be > 0")
        if max_buckets < 2:
            raise ValueError("max_buckets must be >= 2")
        self.relative_accuracy = relative_accuracy
        self._gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._inv_log_gamma = 1.0 / math.log(self._gamma)
        self._min_value = min_value
        self._max_buckets = max_buckets
        self._pos: dict[int, int] = {}
        self._neg: dict[int, int] = {}
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    # -- recording -------------------------------------------------------------------------
    def add(self, value: float) -> None:
        """Record one value. NaN and infinities are ignored (they carry no rank information)."""
        if not -math.inf < value < math.inf:  # NaN fails both: compiled, no call (isfinite is one)
            return
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value > self._min_value:
            store = self._pos
            key = math.ceil(math.log(value) * self._inv_log_gamma)
        elif value < -self._min_value:
            store = self._neg
            key = math.ceil(math.log(-value) * self._inv_log_gamma)
        else:
            self.zero_count += 1
            return
        current = store.get(key)
        if current is None:
            store[key] = 1
            if len(store) > self._max_buckets:
                self._collapse(store)
        else:
            store[key] = current + 1

    def merge(self, other: QuantileSketch) -> None:
        """Add every value recorded in ``other`` to this sketch (same accuracy required)."""
        if not self.compatible(other):
            raise ValueError("cannot merge sketches with different accuracy or min_value")
        if other.count == 0:
            return
        for mine, theirs in ((self._pos, other._pos), (self._neg, other._neg)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
            if len(mine) > self._max_buckets:
                self._collapse(mine)
        self.zero_count += other.zero_count
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def compatible(self, other: QuantileSketch) -> bool:
        """True if ``other`` uses the same bucket layout and can be merged."""
        return (
            self.relative_accuracy == other.relative_accuracy
            and self._min_value == other._min_value
        )

    def copy(self) -> QuantileSketch:
        clone = QuantileSketch(
            self.relative_accuracy, min_value=self._min_value, max_buckets=self._max_buckets
        )
        clone.merge(self)
        return clone

    def _collapse(self, store: dict[int, int]) -> None:
        # Fold the buckets nearest zero (smallest keys) into one so the store stays bounded.
        keys = sorted(store)
        excess = len(keys) - self._max_buckets
        target = keys[excess]
        folded = 0
        for key in keys[:excess]:
            folded += store.pop(key)
        store[target] += folded

    # -- reading ---------------------------------------------------------------------------
    def quantile(self, q: float) -> float | None:
        """Estimate of the ``q`` quantile (0 <= q <= 1); None when the sketch is empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        if self.count == 0:
            return None
        rank = q * (self.count - 1)
        seen = 0
        estimate: float | None = None
        # Ascending order: most negative values first, then zero, then positives.
        for key in sorted(self._neg, reverse=True):
            seen += self._neg[key]
            if seen > rank:
                estimate = -self._value(key)
                break
        if estimate is None:
            seen += self.zero_count
            if seen > rank:
                estimate = 0.0
        if estimate is None:
            for key in sorted(self._pos):
                seen += self._pos[key]
                if seen > rank:
                    estimate = self._value(key)
                    break
        if estimate is None:  # only reachable through float rounding at q == 1
            estimate = self.max
        # The exact min and max are known: never report a value outside them.
        return min(max(estimate, self.min), self.max)

    def quantiles(self, qs: tuple[float, ...]) -> list[float | None]:
        return [self.quantile(q) for q in qs]

    @property
    def bucket_count(self) -> int:
        return len(self._pos) + len(self._neg) + (1 if self.zero_count else 0)

    def _value(self, key: int) -> float:
        return 2.0 * self._gamma**key / (self._gamma + 1.0)

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-ready form: bucket stores as ``[[index, count], ...]`` sorted pairs."""
        return {
            "v": _FORMAT_VERSION,
            "alpha": self.relative_accuracy,
            "min_value": self._min_value,
            "count": self.count,
            "sum": self.sum,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "zero": self.zero_count,
            "pos": [[k, self._pos[k]] for k in sorted(self._pos)],
            "neg": [[k, self._neg[k]] for k in sorted(self._neg)],
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, max_buckets: int = _DEFAULT_MAX_BUCKETS
    ) -> QuantileSketch:
        """Rebuild a sketch written by ``to_dict``; ValueError if the dict is malformed."""
        try:
            if data["v"] != _FORMAT_VERSION:
                raise ValueError(f"unsupported sketch format version {data['v']!r}")
            sketch = cls(
                float(data["alpha"]), min_value=float(data["min_value"]), max_buckets=max_buckets
            )
            sketch.zero_count = int(data["zero"])
            for store, pairs in ((sketch._pos, data["pos"]), (sketch._neg, data["neg"])):
                for key, n in pairs:
                    if int(n) < 0:
                        raise ValueError("negative bucket count")
                    store[int(key)] = int(n)
            sketch.count = int(data["count"])
            sketch.sum = float(data["sum"])
            if sketch.count:
                sketch.min = float(data["min"])
                sketch.max = float(data["max"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed sketch dict: {exc!r}") from exc
        stored = sketch.zero_count + sum(sketch._pos.values()) + sum(sketch._neg.values())
        if stored != sketch.count:
            raise ValueError("malformed sketch dict: bucket counts do not add up to count")
        return sketch

    def __repr__(self) -> str:
        return (
            f"QuantileSketch(count={self.count}, alpha={self.relative_accuracy}, "
            f"buckets={self.bucket_count})"
        )
