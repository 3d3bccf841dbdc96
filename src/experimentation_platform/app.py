"""create_app(settings) -> FastAPI: the platform's routers, observed through the toolkit's one
entry point, `observability.instrument`, with the platform's definitions from `telemetry`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial

from fastapi import FastAPI

from experimentation_platform.api import (
    assignments,
    error_groups,
    events,
    experiments,
    flags,
    health,
    keys,
    ops,
)
from experimentation_platform.api.deps import authenticate_key, known_key
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
from observability.access import AuthGate, FailureThrottle
from observability.logging import get_logger
from observability.metrics import names

__all__ = ["create_app"]

log = get_logger("experimentation_platform.app")


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> FastAPI:
    settings = settings or load_settings()
    settings.ensure_directories()
    owned = platform is None
    platform = platform or build_platform(settings)
    app = FastAPI(
        title="Experimentation Platform",
        version=settings.release,
        description="A/B tests, feature flags, deterministic assignment and conversion events.",
    )
    install_error_handlers(app)
    for module in (experiments, assignments, flags, events, health, ops, error_groups, keys):
        app.include_router(module.router)
    _guard_input(app, settings, platform)
    readiness = health.build_readiness(platform, settings)
    config = observability_config(settings, readiness=readiness, access=platform_access(platform))
    # The toolkit's lifespan wraps this one: it starts first and closes last.
    app.router.lifespan_context = _lifespan(settings, platform, owned)
    observability = instrument(app, config)  # its middleware outermost: it sees every refusal
    app.state.telemetry = attach(observability, platform)
    app.state.platform = platform
    app.state.settings = settings
    app.state.readiness = readiness
    return app


def _guard_input(app: FastAPI, settings: Settings, platform: Platform) -> None:
    """The key check before any route reads the body; added before `instrument`, so it sits
    inside the request context (and inside the toolkit's body bound) and every refusal is
    logged and counted with its request_id."""
    app.add_middleware(
        AuthGate,
        authenticate=partial(authenticate_key, platform),
        known=known_key(platform),
        vouched=platform.keys.seen_before,
        prefixes=("/api/", "/ops/api/"),
        throttle=FailureThrottle(
            max_failures=settings.auth_max_failures,
            window_seconds=settings.auth_failure_window_seconds,
            backoff_seconds=settings.auth_backoff_seconds,
        ),
    )


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
