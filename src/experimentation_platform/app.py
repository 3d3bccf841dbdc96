"""create_app(settings) -> FastAPI: the only place that wires observability into the platform."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI

from experimentation_platform.alerting import build_alerting
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
from experimentation_platform.instrumentation import (
    Instrumentation,
    attach_platform,
    build_instrumentation,
)
from experimentation_platform.observe import Observability, instance_id, setup_observability
from experimentation_platform.ops_ui import mount_ops_ui
from experimentation_platform.settings import Settings, load_settings
from observability.access import AuthGate, FailureThrottle
from observability.asgi import ObservabilityMiddleware
from observability.limits import BodyLimitMiddleware
from observability.logging import get_logger
from observability.metrics.prometheus import InFlightMiddleware, metrics_endpoint
from observability.runmarker import UNCLEAN_SHUTDOWN_DETECTED, RunMarker
from observability.web import alerts_from_evaluator

__all__ = ["create_app"]

log = get_logger("experimentation_platform.app")


def create_app(
    settings: Settings | None = None,
    platform: Platform | None = None,
    observability: Observability | None = None,
) -> FastAPI:
    settings = settings or load_settings()
    settings.ensure_directories()
    observability = observability or setup_observability(settings)
    instruments = build_instrumentation(settings, observability)
    owned = platform is None
    platform = platform or build_platform(settings, cache_observer=instruments.cache.observe)
    attach_platform(instruments, platform, settings)
    if platform.faults.enabled:
        # After query timing is attached: injected latency shows in db_query_duration_seconds.
        platform.faults.instrument_engine(platform.db.engine)
        if observability.shipper is not None:
            platform.faults.cloudwatch_outage = observability.shipper.simulate_outage
    alerting = build_alerting(settings, observability, instruments)
    # One marker per worker slot under var/run: left behind only by a process that did not
    # shut down cleanly (kill -9, OOM, power loss); the next start of the slot reports it.
    run_marker = RunMarker(settings.var_dir / "run", instance=instance_id(settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            previous = run_marker.start()
        except OSError as exc:  # an unwritable var dir costs this evidence, not the service
            log.warning("run_marker_unavailable", error=type(exc).__name__)
            previous = None
        if previous is not None:
            log.warning(UNCLEAN_SHUTDOWN_DETECTED, **previous.fields())
        log.info(
            "service_started",
            release=settings.release,
            environment=settings.environment,
            database=platform.db.dialect,
            cache=platform.cache.backend,
        )
        await instruments.start()
        if settings.alerts_enabled:
            alerting.start()
        yield
        log.info("service_stopping")
        if settings.alerts_enabled:
            alerting.stop()
        await instruments.stop()
        if owned:
            platform.close()
        observability.close(timeout=5.0)
        run_marker.stop()  # last: everything above finished, this was a clean shutdown

    app = FastAPI(
        title="Experimentation Platform",
        version=settings.release,
        description="A/B tests, feature flags, deterministic assignment and conversion events.",
        lifespan=lifespan,
    )
    app.state.platform = platform
    app.state.settings = settings
    app.state.observability = observability
    app.state.instruments = instruments
    app.state.alerting = alerting
    app.state.readiness = health.build_readiness(platform, settings)
    app.state.alerts_provider = lambda: alerts_from_evaluator(alerting.evaluator)
    install_error_handlers(app)
    for module in (experiments, assignments, flags, events, health, ops, error_groups, keys):
        app.include_router(module.router)
    app.add_route(
        "/metrics", _metrics_app(instruments, platform, settings), include_in_schema=False
    )
    mount_ops_ui(app, settings, observability, instruments)
    # Innermost first: the body bound, then the key check (both before any route reads the
    # body), inside the request context so every refusal is logged with its request_id.
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
    app.add_middleware(
        InFlightMiddleware,
        gauge=instruments.http.in_flight,
        exclude_paths=instruments.http.excluded,
    )
    app.add_middleware(
        ObservabilityMiddleware,
        observers=[*observability.request_observers, instruments.http, instruments.observe_request],
        trusted_proxies=[p for p in settings.trusted_proxies.split(",") if p.strip()],
    )
    return app


def _metrics_app(instruments: Instrumentation, platform: Platform, settings: Settings) -> Any:
    """/metrics for a scraper's token (EP_METRICS_TOKEN) or an admin API key; never open."""

    def is_admin(key: str) -> bool:
        principal = platform.keys.cached(key) or platform.keys.authenticate(key)
        return principal is not None and principal.role == "admin"

    return metrics_endpoint(
        instruments.registry, token=settings.metrics_token or None, authorize=is_admin
    )
