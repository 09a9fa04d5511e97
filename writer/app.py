"""The writer process: the consumer pipeline plus /health, /ready and /metrics on its own port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from common.settings import Settings
from common.transport import WriterTransport
from common.web import HttpMetrics, add_ops_routes, mlflow_middleware, run_checks
from writer.consumer import Consumer
from writer.metrics import WriterMetrics

log = logging.getLogger(__name__)


@dataclass
class WriterDeps:
    db: AsyncDatabase
    transport: WriterTransport
    registry: CollectorRegistry


def create_consumer(settings: Settings, deps: WriterDeps) -> Consumer:
    return Consumer(settings, deps.db, deps.transport, WriterMetrics(deps.registry))


@contextlib.asynccontextmanager
async def running(consumer: Consumer) -> AsyncIterator[asyncio.Task]:
    """Start consuming; on exit stop the loop (unacked events are redelivered to the next writer)."""
    await consumer.start()
    task = asyncio.create_task(consumer.run_forever(), name="writer-consumer")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(settings: Settings, deps: WriterDeps, consumer: Consumer | None = None) -> web.Application:
    consumer = consumer or create_consumer(settings, deps)
    app = web.Application(middlewares=[mlflow_middleware(HttpMetrics(deps.registry, "writer"))])

    async def ready() -> dict[str, str]:
        checks = await run_checks({"mongodb": lambda: deps.db.command("ping"), "amqp": deps.transport.check})
        if checks.get("mongodb") == "ok" and not consumer.store_healthy:
            checks["mongodb"] = "writes failing"
        return checks

    add_ops_routes(app, deps.registry, ready)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        async with running(consumer):
            yield
        await deps.transport.close()

    app.cleanup_ctx.append(lifecycle)
    app["consumer"] = consumer
    return app
