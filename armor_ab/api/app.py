"""The FastAPI application of the API: ``create_app(settings)`` builds it.

``armor_ab.web.server`` mounts the browser side (snippet, example site) on it and runs the whole
server on uvicorn (``armor-ab serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from armor_ab.api.errors import install_error_handlers
from armor_ab.api.middleware import ClientCORSMiddleware, HotPaths, RequestContextMiddleware
from armor_ab.api.routes import admin, catalog, client, health, ops, planning, results
from armor_ab.config import CORS_ORIGINS_ENV, env_settings, resolve_db_path
from armor_ab.services.health import HealthService
from armor_ab.services.lake_export import LakeExporter
from armor_ab.services.state import AppState, ServerSettings

log = logging.getLogger("armor_ab.api")
CORS_ENV = CORS_ORIGINS_ENV
# FastAPI's built-in OpenTelemetry hooks look up the global providers and environment on every
# request even when none is configured; the API exports its own Prometheus metrics instead.
TELEMETRY = {"tracing": False, "metrics": False, "logs": False}


def settings_from_env(db: str | os.PathLike[str] | None = None, **overrides) -> ServerSettings:
    return ServerSettings(db_path=resolve_db_path(db), cors_origins=env_settings().cors_origins, **overrides)


class ArmorApp(FastAPI):
    """FastAPI with the page routes (``HotPaths``) in front of Starlette's middleware stack.

    Starlette builds its stack (error handler, FastAPI's body limit, CORS, our request context)
    lazily on the first request; the page routes need none of those layers, and every layer
    costs a coroutine and a wrapped ``send`` per request.
    """

    def build_middleware_stack(self):  # noqa: ANN201 (Starlette's signature)
        stack = super().build_middleware_stack()
        state: AppState = self.state.armor
        return HotPaths(stack, state) if state.settings.fast_path else stack


def create_app(settings: ServerSettings) -> FastAPI:
    """The API over one DuckDB file, which this process owns for as long as it runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("api starting", extra={"db": str(settings.db_path)})
        # The live-health monitor (services/health.py): checks every running experiment, pauses a critical one.
        monitor = (asyncio.create_task(app.state.health.run(settings.health_interval_s), name="armor-ab-health")
                   if settings.health_interval_s > 0 else None)
        # The event lake (services/lake_export.py): exports the new commits every export_interval_s.
        exporter = app.state.lake
        export = asyncio.create_task(exporter.run(), name="armor-ab-lake") if exporter is not None else None
        yield
        if monitor is not None:
            app.state.health.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(monitor, 5.0)  # the check in progress; cancelled past that
        if export is not None:
            exporter.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(export, 120.0)  # the last round: what was acknowledged goes in the lake
        app.state.armor.close()
        log.info("api stopped")

    app = ArmorApp(
        title="armor-ab",
        version="0.1.0",
        summary="A/B tests of ARMOR-generated interleaved catalog content",
        lifespan=lifespan,
        telemetry=TELEMETRY,
    )
    # Opened here, not in lifespan: the DB lock is taken (or refused) when the app is built.
    state = AppState.open(settings)
    app.state.armor = state
    app.state.health = HealthService(state)
    app.state.lake = (LakeExporter(state, settings.export_dir, settings.export_interval_s)
                      if settings.export_dir is not None else None)
    install_error_handlers(app)
    app.include_router(client.router)
    app.include_router(admin.router)
    app.include_router(planning.router)
    app.include_router(results.router)
    app.include_router(health.router)
    app.include_router(catalog.router)
    app.include_router(ops.router)
    app.openapi = lambda: _openapi(app)
    # The last added is the outermost. CORS opens the client routes only (the ones web pages call:
    # fastpath.client_route); the page routes answer their simple requests in HotPaths (see ArmorApp).
    app.add_middleware(RequestContextMiddleware, state=state)
    app.add_middleware(
        ClientCORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    return app


def _openapi(app: FastAPI) -> dict:
    """OpenAPI with the body schemas of the hand-parsed routes (they declare no body parameter)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    from armor_ab.events import EventBatch
    from armor_ab.experiments.models import ExperimentSpec

    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (EventBatch, ExperimentSpec):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    schema["components"].setdefault("securitySchemes", {})["HTTPBearer"] = {"type": "http", "scheme": "bearer"}
    app.openapi_schema = schema
    return schema


__all__ = ["ServerSettings", "create_app", "settings_from_env"]
