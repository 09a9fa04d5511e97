"""The writer process: the consumer pipeline plus /health, /ready and /metrics on its own port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from common.settings import Settings
from common.transport import WriterTransport
from common.web import HttpMetrics, add_ops_routes, mlflow_middleware, run_checks
from writer.consumer import Consumer
from writer.metrics import WriterMetrics

Probes = dict[str, Callable[[], Awaitable[Any]]]


@dataclass
class WriterDeps:
    db: AsyncDatabase
    transport: WriterTransport
    registry: CollectorRegistry


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


def install(app: web.Application, settings: Settings, deps: WriterDeps) -> Probes:
    """Run the consumer for the lifetime of `app`; return the writer's readiness probes."""
    consumer = Consumer(settings, deps.db, deps.transport, WriterMetrics(deps.registry))

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        async with running(consumer):
            yield
        await deps.transport.close()

    async def store_writes() -> None:
        if not consumer.store_healthy:
            raise RuntimeError("MongoDB writes are failing; batches are being retried")

    app.cleanup_ctx.append(lifecycle)
    return {"mongodb": lambda: deps.db.command("ping"), "queue": deps.transport.check, "writes": store_writes}


def create_app(settings: Settings, deps: WriterDeps) -> web.Application:
    app = web.Application(middlewares=[mlflow_middleware(HttpMetrics(deps.registry, "writer"))])
    probes = install(app, settings, deps)

    async def ready() -> dict[str, str]:
        return await run_checks(probes)

    add_ops_routes(app, deps.registry, ready)
    return app
