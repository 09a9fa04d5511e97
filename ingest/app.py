"""The ingest tier: `create_app(settings, deps)` wires the write endpoints to the event bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from common.artifacts import ArtifactStore
from common.auth import install_security
from common.mongo import ensure_default_experiment
from common.settings import Settings
from common.transport import IngestTransport
from common.web import Probes, add_ops_routes, tier_app
from ingest.artifacts import ArtifactService, add_artifact_routes
from ingest.bus import EventBus, ack_header_middleware
from ingest.imports import ImportService, import_routes
from ingest.lookups import Lookups
from ingest.metrics import IngestMetrics
from ingest.models import LoggedModelService
from ingest.registry import RegistryService, registry_routes
from ingest.routes import PREFIXES, add_routes
from ingest.service import IngestService
from ingest.traces import TraceMetrics, TraceService, trace_routes
from ingest.ui_api import ui_api_routes

CLIENT_MAX_SIZE = 16 * 1024 * 1024  # JSON bodies; artifact uploads stream and are not bound by it



@dataclass
class IngestDeps:
    db: AsyncDatabase
    transport: IngestTransport
    registry: CollectorRegistry
    artifacts: ArtifactStore


def install(app: web.Application, settings: Settings, deps: IngestDeps) -> Probes:
    """Add ingest's routes and lifecycle to `app`; return its readiness probes."""
    install_security(app, settings, deps.db)
    metrics = IngestMetrics(deps.registry)
    bus = EventBus(settings, deps.transport, metrics)
    metrics.down.labels("queue").set_function(bus.queue_outage.down_for)
    metrics.down.labels("commits").set_function(bus.commits_degraded_for)
    app.middlewares.append(ack_header_middleware)
    lookups = Lookups(deps.db, settings.run_cache_ttl_s, metrics)
    service = IngestService(settings, bus, lookups)
    artifacts = ArtifactService(deps.artifacts, bus, settings.max_artifact_bytes, settings.max_concurrent_uploads)
    add_routes(app, service, LoggedModelService(bus, lookups), settings.ack_mode)
    for method, path, handler in registry_routes(RegistryService(deps.db, bus, lookups)):
        for prefix in PREFIXES:
            app.router.add_route(method, prefix + path, handler)
    traces = TraceService(deps.db, bus, lookups, settings.ack_mode, TraceMetrics(deps.registry))
    for method, path, handler in trace_routes(traces):
        app.router.add_route(method, path, handler)
    for method, path, handler in ui_api_routes(deps.db, service, artifacts):
        app.router.add_route(method, path, handler)
    for method, path, handler in import_routes(ImportService(deps.db, bus, lookups)):
        app.router.add_route(method, path, handler)
    add_artifact_routes(app, artifacts)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await ensure_default_experiment(deps.db)
        await bus.start()
        yield
        await bus.close()
        await deps.artifacts.close()

    app.cleanup_ctx.append(lifecycle)
    return {"mongodb": lookups.ping, "queue": deps.transport.check, "artifacts": deps.artifacts.check}


def create_app(settings: Settings, deps: IngestDeps) -> web.Application:
    app = tier_app("ingest", deps.registry, client_max_size=CLIENT_MAX_SIZE)
    add_ops_routes(app, deps.registry, install(app, settings, deps))
    return app
