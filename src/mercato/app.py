"""The FastAPI application: routers, middleware, error handlers, docs served locally."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from swagger_ui_bundle import swagger_ui_path

from mercato import __version__, bootstrap, http_security, instance_keys, migrate, openapi
from mercato.db import Database
from mercato.errors import install_error_handlers
from mercato.inventory.stream import StockStream
from mercato.middleware import RequestGate, RequestIdMiddleware, WriterGate
from mercato.settings import Settings, get_settings
from mercato.web import pages

API_DESCRIPTION = """
Mercato is one system of record for every sales channel: one catalog, one price and
promotion engine, one real-time stock ledger, one order system, one customer profile.

* **Staff endpoints** (`/v1/...`) take `Authorization: Bearer <staff token>` from
  `POST /v1/auth/login`; each checks one permission of the caller's role.
* **Shopper endpoints** (`/v1/store/...`) take the channel's key in `X-Channel-Key`
  and answer in that channel's language, currency and assortment.
* Errors are RFC 9457 `application/problem+json` with a stable `code`.
"""


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    instance_keys.secret_key(settings)  # refuses to start with none or a published one
    if database is None:
        database = bootstrap.open_database(settings)
    dispatcher = bootstrap.bootstrap(database, settings)
    database.wake_hook = dispatcher.wake
    stock_stream = StockStream(database)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.dispatcher_enabled:
            dispatcher.start()
        try:
            yield
        finally:
            await stock_stream.stop()
            dispatcher.stop()

    app = FastAPI(
        title="Mercato",
        version=__version__,
        description=API_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.dispatcher = dispatcher
    app.state.stock_stream = stock_stream

    install_error_handlers(app)
    pages.install(app)  # the back office: static files, and errors answered as pages
    openapi.install(app)
    if database.dialect == "sqlite":
        app.add_middleware(WriterGate, limit=settings.sqlite_concurrent_writers)
    app.add_middleware(RequestGate, limit=settings.max_concurrent_requests)
    http_security.install(app, settings)  # body limits, security headers, trusted proxies

    app.add_middleware(RequestIdMiddleware)

    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return http_security.page(
            get_swagger_ui_html(
                openapi_url="/openapi.json",
                title="Mercato API",
                swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                swagger_css_url="/static/swagger/swagger-ui.css",
                swagger_favicon_url="/static/swagger/favicon-32x32.png",
            )
        )

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get(
        "/ready",
        tags=["operations"],
        responses={503: {"description": "The database is unreachable or not migrated"}},
    )
    def ready() -> JSONResponse:
        try:
            with database.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            current = migrate.current_revision(database.engine)
        except Exception as exc:  # readiness reports, it does not crash
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable", "detail": str(exc)[:200]},
                status_code=503,
            )
        head = migrate.head_revision()
        ok = current == head
        return JSONResponse(
            {
                "status": "ready" if ok else "unavailable",
                "database": database.dialect,
                "migration": current,
                "expected_migration": head,
            },
            status_code=200 if ok else 503,
        )

    for api in bootstrap.routers():
        app.include_router(api)
    return app
