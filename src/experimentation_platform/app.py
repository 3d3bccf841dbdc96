"""create_app(settings) -> FastAPI: the only place that wires observability into the platform."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from experimentation_platform.api import assignments, events, experiments, flags, health, ops
from experimentation_platform.api.errors import install_error_handlers
from experimentation_platform.container import Platform, build_platform
from experimentation_platform.settings import Settings, load_settings
from observability.asgi import ObservabilityMiddleware

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> FastAPI:
    settings = settings or load_settings()
    owned = platform is None
    platform = platform or build_platform(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            platform.close()

    app = FastAPI(
        title="Experimentation Platform",
        version=settings.release,
        description="A/B tests, feature flags, deterministic assignment and conversion events.",
        lifespan=lifespan,
    )
    app.state.platform = platform
    app.state.settings = settings
    install_error_handlers(app)
    for module in (experiments, assignments, flags, events, health, ops):
        app.include_router(module.router)
    app.add_middleware(
        ObservabilityMiddleware,
        trusted_proxies=[p for p in settings.trusted_proxies.split(",") if p.strip()],
    )
    return app
