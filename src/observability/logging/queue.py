"""A bounded queue in front of the sinks that sheds the least severe events first.

The request path only appends (a lock and a deque append, no I/O). When the queue is full, the
oldest event of the lowest severity present is dropped to make room for a more severe one, and
a new event that is not more severe than anything queued is itself dropped. Errors are never
shed for less: past the bound they get an extra allowance (`error_reserve`); only when that too
is full is an error dropped, and every drop is counted by reason.

Order is kept across severities by a byte per put, only in a batch that mixes them: the writer
merges the per-severity deques by it.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["SeverityQueue"]

# Buckets: 0 = debug, 1 = info, 2 = warning, 3 = error and above.
_BUCKETS = 4


def bucket_of(level: int) -> int:
    if level >= 40:
        return 3
    if level >= 30:
        return 2
    if level >= 20:
        return 1
    return 0


class SeverityQueue:
    def __init__(self, maxsize: int = 50_000, error_reserve: int | None = None) -> None:
        self.maxsize = maxsize
        self.error_reserve = maxsize if error_reserve is None else error_reserve
        self._queues: list[deque[Any]] = [deque() for _ in range(_BUCKETS)]
        self._size = 0
        # A batch's order, one byte (the bucket) a put, kept only once the batch mixes
        # severities; None while it holds one, as almost every batch does. No tuple and no
        # sequence number per item: the queue holds a batch of lines between drains, and each
        # object held is memory the request path keeps warm. A bucket's dropped items are
        # always its oldest, so they are the first `_skipped[bucket]` of its bytes here.
        # Bounded with no drain: a put past the bound is kept only in place of a less severe
        # item, so at most 3 such puts follow each of the (maxsize + reserve) others.
        self._order: bytearray | None = None
        self._only = 0  # the batch's one bucket while `_order` is None
        self._skipped = [0] * _BUCKETS
        self._lock = threading.Lock()
        # Bound once: calling a bound method is cheaper than looking the method up on each put
        # (which the compiled build does for `with lock` and `lock.acquire()` alike).
        self._acquire: Callable[[], object] = self._lock.acquire
        self._release: Callable[[], object] = self._lock.release
        self.dropped: Counter[str] = Counter()
        self.wakeup = threading.Event()
        self.wake_at = max(1, min(512, maxsize // 4))

    def __len__(self) -> int:
        return self._size

    def put(self, level: int, item: Any) -> bool:
        """Queue an item; False when it was dropped. Never blocks, never raises."""
        bucket = bucket_of(level)
        self._acquire()
        try:
            if self._size >= self.maxsize and not self._make_room(bucket):
                return False
            self._queues[bucket].append(item)
            order = self._order
            if order is not None:
                order.append(bucket)
            elif bucket != self._only:
                if self._size == 0:
                    self._only = bucket
                else:  # the batch starts mixing: from here on each put records its bucket
                    order = bytearray((self._only,)) * self._size
                    order.append(bucket)
                    self._order = order
            self._size += 1
            size = self._size
        finally:
            self._release()
        # Once per batch, at the crossing: Event.set() is Python code (a lock and a notify, ~1 us)
        # and the writer may take a while to get the GIL, so setting it on every put past the
        # mark cost each of those requests the call again.
        if size == self.wake_at:
            self.wakeup.set()
        return True

    def _make_room(self, bucket: int) -> bool:
        for lower in range(bucket):
            if self._queues[lower]:
                self._queues[lower].popleft()
                self._size -= 1
                self.dropped[f"overflow_level_{lower}"] += 1
                if self._order is not None:  # (with none kept, put rebuilds it from _size)
                    self._skipped[lower] += 1
                return True
        if bucket == _BUCKETS - 1 and self._size < self.maxsize + self.error_reserve:
            return True  # errors may use the reserve rather than be shed
        self.dropped[f"overflow_level_{bucket}"] += 1
        return False

    def drain(self) -> list[Any]:
        """Take every queued item, in the order they were put (bounded by maxsize + reserve)."""
        self._acquire()
        try:
            queues, order, skipped, only = self._queues, self._order, self._skipped, self._only
            self._queues = [deque() for _ in range(_BUCKETS)]
            self._order = None
            self._skipped = [0] * _BUCKETS
            self._size = 0
        finally:
            self._release()
        if order is None:  # one severity: in order already
            return list(queues[only])
        sources = [iter(q) for q in queues]
        return [next(sources[bucket]) for bucket in _kept(order, skipped)]


# Iterable, not bytearray: mypyc has no sequence type for a bytearray and fails on a loop over
# one (an internal error); as an Iterable it iterates it generically.
def _kept(order: Iterable[int], skipped: list[int]) -> Iterable[int]:
    """The order without the bytes of dropped items (each bucket's first `skipped`)."""
    skip = list(skipped)
    kept = bytearray()
    for bucket in order:
        if skip[bucket]:
            skip[bucket] -= 1
        else:
            kept.append(bucket)
    return kept
