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
from observability.limits import BodyLimitMiddleware
from observability.logging import get_logger
from observability.metrics import names
from observability.runmarker import UNCLEAN_SHUTDOWN_DETECTED, RunMarker

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
    config = observability_config(
        settings, readiness=readiness.checks, access=platform_access(platform)
    )
    # One marker per worker slot under var/run: left behind only by a process that did not
    # shut down cleanly (kill -9, OOM, power loss); the next start of the slot reports it.
    run_marker = RunMarker(settings.var_dir / "run", instance=config.instance_id)
    # The toolkit's lifespan wraps this one: it starts first and closes last.
    app.router.lifespan_context = _lifespan(settings, platform, owned, run_marker)
    observability = instrument(app, config)  # its middleware outermost: it sees every refusal
    app.state.telemetry = attach(observability, platform)
    app.state.platform = platform
    app.state.settings = settings
    app.state.readiness = readiness
    return app


def _guard_input(app: FastAPI, settings: Settings, platform: Platform) -> None:
    """Innermost first: the body bound, then the key check, both before any route reads the
    body; added before `instrument`, so they sit inside the request context and every refusal
    is logged and counted with its request_id."""
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        path_limits={"/api/v1/events": settings.max_events_body_bytes},
    )
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
    settings: Settings, platform: Platform, owned: bool, run_marker: RunMarker
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        telemetry: PlatformTelemetry = app.state.telemetry
        try:
            previous = run_marker.start()
        except OSError as exc:  # an unwritable var dir costs this evidence, not the service
            log.warning("run_marker_unavailable", error=type(exc).__name__)
            previous = None
        if previous is not None:
            log.warning(UNCLEAN_SHUTDOWN_DETECTED, **previous.fields())
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
        # The platform's shutdown is complete; the toolkit closes its parts right after.
        run_marker.stop()

    return lifespan
