"""The query tier: `create_app(settings, deps)` wires the read endpoints to MongoDB;
`install(app, settings, deps)` adds them to an app another process composes (standalone)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from common.artifacts import ArtifactStore
from common.auth import install_security
from common.settings import Settings
from common.web import Probes, add_ops_routes, tier_app
from query.artifacts import add_artifact_routes
from query.graphql_api import graphql_routes
from query.registry import registry_routes
from query.routes import PREFIXES, add_routes
from query.ui import find_ui_build, ui_routes
from query.system import system_routes
from query.traces import trace_routes
from query.ui_api import ui_api_routes


@dataclass
class QueryDeps:
    db: AsyncDatabase
    registry: CollectorRegistry
    artifacts: ArtifactStore


def install(app: web.Application, settings: Settings, deps: QueryDeps) -> Probes:
    """Add the read routes to `app`; return the readiness probes. The tier only reads (init-db
    and ingest create the Default experiment and the indexes)."""
    install_security(app, settings, deps.db)
    add_routes(app, deps.db)
    for method, path, handler in registry_routes(deps.db):
        for prefix in PREFIXES:
            app.router.add_route(method, prefix + path, handler)
    for method, path, handler in [*ui_routes(find_ui_build()), *ui_api_routes(deps.db, deps.artifacts),
                                  *graphql_routes(deps.db, deps.artifacts),
                                  *system_routes(deps.db, deps.artifacts, deps.registry),
                                  *trace_routes(deps.db)]:
        app.router.add_route(method, path, handler)
    add_artifact_routes(app, deps.artifacts, deps.db)

    async def ping() -> None:
        await deps.db.command("ping")

    async def close(_: web.Application) -> AsyncIterator[None]:
        yield
        await deps.artifacts.close()

    app.cleanup_ctx.append(close)
    return {"mongodb": ping, "artifacts": deps.artifacts.check}


def create_app(settings: Settings, deps: QueryDeps) -> web.Application:
    app = tier_app("query", deps.registry)
    add_ops_routes(app, deps.registry, install(app, settings, deps))
    return app
