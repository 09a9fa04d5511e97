"""The ingest tier: `create_app(settings, deps)` wires the write endpoints to the event bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from common.mongo import ensure_default_experiment
from common.settings import Settings
from common.transport import IngestTransport
from common.web import HttpMetrics, add_ops_routes, mlflow_middleware, run_checks
from ingest.bus import EventBus
from ingest.lookups import Lookups
from ingest.metrics import IngestMetrics
from ingest.routes import add_routes
from ingest.service import IngestService

CLIENT_MAX_SIZE = 16 * 1024 * 1024  # JSON bodies; artifact uploads stream and are not bound by it


@dataclass
class IngestDeps:
    db: AsyncDatabase
    transport: IngestTransport
    registry: CollectorRegistry


def create_app(settings: Settings, deps: IngestDeps) -> web.Application:
    metrics = IngestMetrics(deps.registry)
    bus = EventBus(settings, deps.transport, metrics)
    lookups = Lookups(deps.db, settings.run_cache_ttl_s, metrics)
    service = IngestService(settings, bus, lookups)

    app = web.Application(middlewares=[mlflow_middleware(HttpMetrics(deps.registry, "ingest"))],
                          client_max_size=CLIENT_MAX_SIZE)
    add_routes(app, service, settings.ack_mode)

    async def ready() -> dict[str, str]:
        return await run_checks({"mongodb": lookups.ping, "amqp": deps.transport.check})

    add_ops_routes(app, deps.registry, ready)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await ensure_default_experiment(deps.db)
        await bus.start()
        yield
        await bus.close()

    app.cleanup_ctx.append(lifecycle)
    return app
