"""Observability toolkit for ASGI services: logs, context, metrics, errors, alerts, dashboards.

    from observability import ObservabilityConfig, instrument

    app = FastAPI()
    instrument(app, ObservabilityConfig(service="orders", admin_token="...", metrics_token="..."))

It never imports the experimentation platform: any Starlette or FastAPI app can use it
(docs/toolkit.md). The names below load on first use, so a process that needs one part (the
CloudWatch shipping agent, a CLI) does not import the whole toolkit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from observability import compiled as _compiled

# Before any other module of the package loads: the request path's compiled modules, when a
# build matching the sources exists (observability/compiled.py).
_compiled.activate()

if TYPE_CHECKING:
    from observability.config import (
        AlertSettings,
        CloudWatchSettings,
        ConfigError,
        LogSettings,
        NotifySettings,
        ObservabilityConfig,
    )
    from observability.core import Observability
    from observability.wiring import instrument

__all__ = [
    "AlertSettings",
    "CloudWatchSettings",
    "ConfigError",
    "LogSettings",
    "NotifySettings",
    "Observability",
    "ObservabilityConfig",
    "instrument",
]


def __getattr__(name: str) -> Any:
    if name == "instrument":
        from observability.wiring import instrument

        return instrument
    if name == "Observability":
        from observability.core import Observability

        return Observability
    if name in __all__:
        from observability import config

        return getattr(config, name)
    raise AttributeError(f"module 'observability' has no attribute {name!r}")
