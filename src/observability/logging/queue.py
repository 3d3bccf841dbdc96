"""A bounded queue in front of the sinks that sheds the least severe events first.

The request path only appends (a lock and a deque append, no I/O). When the queue is full, the
oldest event of the lowest severity present is dropped to make room for a more severe one, and
a new event that is not more severe than anything queued is itself dropped. Errors are never
shed for less: past the bound they get an extra allowance (`error_reserve`); only when that too
is full is an error dropped, and every drop is counted by reason.

Order is kept across severities by a sequence number: the writer merges the per-severity deques.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from operator import itemgetter
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
        self._queues: list[deque[tuple[int, Any]]] = [deque() for _ in range(_BUCKETS)]
        self._size = 0
        self._seq = 0
        self._lock = threading.Lock()
        self.dropped: Counter[str] = Counter()
        self.wakeup = threading.Event()
        self.wake_at = max(1, min(512, maxsize // 4))

    def __len__(self) -> int:
        return self._size

    def put(self, level: int, item: Any) -> bool:
        """Queue an item; False when it was dropped. Never blocks, never raises."""
        bucket = bucket_of(level)
        with self._lock:
            if self._size >= self.maxsize and not self._make_room(bucket):
                return False
            self._seq += 1
            self._queues[bucket].append((self._seq, item))
            self._size += 1
            size = self._size
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
                return True
        if bucket == _BUCKETS - 1 and self._size < self.maxsize + self.error_reserve:
            return True  # errors may use the reserve rather than be shed
        self.dropped[f"overflow_level_{bucket}"] += 1
        return False

    def drain(self) -> list[Any]:
        """Take every queued item, in the order they were put (bounded by maxsize + reserve)."""
        with self._lock:
            taken: list[tuple[int, Any]] = []
            filled = 0
            for q in self._queues:
                if q:
                    filled += 1
                    taken.extend(q)
                    q.clear()
            self._size = 0
        if filled > 1:  # one severity (the usual batch) is in order already
            taken.sort(key=itemgetter(0))
        return [item for _, item in taken]
