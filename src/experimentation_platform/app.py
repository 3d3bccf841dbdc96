"""create_app(settings) -> FastAPI: the platform's routers, observed through the toolkit's one
entry point, `observability.instrument`, with the platform's definitions from `telemetry`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from experimentation_platform.api import (
    assignments,
    error_groups,
    events,
    experiments,
    flags,
    health,
    ops,
)
from experimentation_platform.api.errors import install_error_handlers
from experimentation_platform.container import Platform, build_platform
from experimentation_platform.settings import Settings, load_settings
from experimentation_platform.telemetry.wiring import (
    PlatformTelemetry,
    attach,
    observability_config,
    platform_access,
)
from observability import instrument
from observability.logging import get_logger
from observability.metrics import names

__all__ = ["create_app"]

log = get_logger("experimentation_platform.app")


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> FastAPI:
    settings = settings or load_settings()
    owned = platform is None
    platform = platform or build_platform(settings)
    app = FastAPI(
        title="Experimentation Platform",
        version=settings.release,
        description="A/B tests, feature flags, deterministic assignment and conversion events.",
    )
    install_error_handlers(app)
    for module in (experiments, assignments, flags, events, health, ops, error_groups):
        app.include_router(module.router)
    config = observability_config(
        settings,
        readiness={"database": platform.db.ping, "cache": platform.cache.ping},
        access=platform_access(platform),
    )
    # The toolkit's lifespan wraps this one: it starts first and closes last.
    app.router.lifespan_context = _lifespan(settings, platform, owned)
    observability = instrument(app, config)
    app.state.telemetry = attach(observability, platform)
    app.state.platform = platform
    app.state.settings = settings
    return app


def _lifespan(
    settings: Settings, platform: Platform, owned: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        telemetry: PlatformTelemetry = app.state.telemetry
        log.info(
            names.SERVICE_STARTED,
            release=settings.release,
            environment=settings.environment,
            database=platform.db.dialect,
            cache=platform.cache.backend,
        )
        telemetry.start()
        yield
        log.info(names.SERVICE_STOPPING)
        telemetry.stop()
        if owned:
            platform.close()

    return lifespan
