"""Error triggers as notifications: what the on-call person reads about a new, regressed or
spiking error group, and how often.

Storm-safe: a spike of a group announced less than `quiet_seconds` ago adds nothing the on-call
person does not know yet, so it is not sent.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from observability.alerting.notifiers.base import Notification
from observability.errors.triggers import ErrorTrigger, TriggerKind

__all__ = ["ErrorNotifier"]

_TITLES = {
    TriggerKind.NEW_GROUP: "New error group",
    TriggerKind.REGRESSION: "Error regression",
    TriggerKind.RATE_SPIKE: "Error rate spike",
}


class ErrorNotifier:
    """An `ErrorTracker(on_trigger=...)` callback that submits one `Notification` per trigger.

    `submit` is the dispatcher's (it queues; this runs on the tracker's writer thread).
    `evidence_url(fingerprint)` links to the group's page, e.g. the /ops error page;
    `search_hint(request_id)` tells how to find that request's log lines.
    """

    def __init__(
        self,
        submit: Callable[[Notification], object],
        *,
        evidence_url: Callable[[str], str] | None = None,
        search_hint: Callable[[str], str] | None = None,
        quiet_seconds: float = 600.0,
        max_groups: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._submit = submit
        self._evidence_url = evidence_url
        self._search_hint = search_hint
        self._quiet = quiet_seconds
        self._max_groups = max_groups
        self._clock = clock
        self._announced: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, trigger: ErrorTrigger) -> None:
        now = self._clock()
        with self._lock:
            last = self._announced.get(trigger.fingerprint)
            quiet = last is not None and now - last < self._quiet
            if trigger.kind == TriggerKind.RATE_SPIKE and quiet:
                return
            self._announced[trigger.fingerprint] = now
            self._announced.move_to_end(trigger.fingerprint)
            while len(self._announced) > self._max_groups:
                self._announced.popitem(last=False)
        self._submit(self.notification(trigger))

    def notification(self, trigger: ErrorTrigger) -> Notification:
        rate = f", {trigger.rate_per_minute:.0f}/min" if trigger.rate_per_minute else ""
        first = trigger.first_request_id
        hint = f" {self._search_hint(first)}" if first and self._search_hint else ""
        return Notification(
            key=f"error:{trigger.fingerprint}:{trigger.kind}",
            status="firing",
            severity=trigger.severity,
            title=f"{_TITLES.get(trigger.kind, trigger.kind)}: {trigger.type_name}",
            summary=f"{trigger.message} ({trigger.count} so far{rate})",
            description=(
                f"Classified {trigger.severity} by rule '{trigger.rule_name}'. "
                f"First request_id: {first}.{hint}"
            ),
            source="error",
            labels={"fingerprint": trigger.fingerprint, "kind": str(trigger.kind)},
            evidence_url=self._evidence_url(trigger.fingerprint) if self._evidence_url else None,
        )
