"""Error tracking: capture, fingerprint, classify, store, and a bridge to Sentry.

Typical wiring (see docs/errors.md)::

    store = ErrorStore.from_url("sqlite:///observability.db")
    store.create_schema()
    tracker = ErrorTracker(store, mask=masking_policy, fingerprinter=Fingerprinter(["myapp"]),
                           on_trigger=notify)
    uninstall = install_hooks(tracker)
    ...
    tracker.capture(exc, {"request_id": ..., "route": ...})
"""

from observability.errors.classify import (
    DEFAULT_RULES,
    Classification,
    ClassificationRule,
    Classifier,
    Severity,
    Subject,
    rules_from_dicts,
)
from observability.errors.fingerprint import Fingerprinter, FingerprintRule, parametrize_message
from observability.errors.hooks import (
    ErrorLogHandler,
    StructlogErrorCapture,
    asyncio_exception_handler,
    install_hooks,
)
from observability.errors.store import (
    ErrorGroup,
    ErrorStats,
    ErrorStore,
    GroupDetail,
    GroupStatus,
    StoredOccurrence,
)
from observability.errors.tracker import ErrorTracker, TrackerConfig, TrackerStats
from observability.errors.triggers import ErrorTrigger, TriggerKind

__all__ = [
    "DEFAULT_RULES",
    "Classification",
    "ClassificationRule",
    "Classifier",
    "ErrorGroup",
    "ErrorLogHandler",
    "ErrorStats",
    "ErrorStore",
    "ErrorTracker",
    "ErrorTrigger",
    "FingerprintRule",
    "Fingerprinter",
    "GroupDetail",
    "GroupStatus",
    "Severity",
    "StoredOccurrence",
    "StructlogErrorCapture",
    "Subject",
    "TrackerConfig",
    "TrackerStats",
    "TriggerKind",
    "asyncio_exception_handler",
    "install_hooks",
    "parametrize_message",
    "rules_from_dicts",
]
