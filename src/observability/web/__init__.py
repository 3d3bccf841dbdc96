"""The built-in operations UI (dashboards, errors, alerts) as a FastAPI router."""

from observability.web.ui import (
    STATIC_DIR,
    AlertsProvider,
    LogLookup,
    alerts_from_evaluator,
    build_ops_ui,
    static_token_check,
    token_auth,
)

__all__ = [
    "STATIC_DIR",
    "AlertsProvider",
    "LogLookup",
    "alerts_from_evaluator",
    "build_ops_ui",
    "static_token_check",
    "token_auth",
]
