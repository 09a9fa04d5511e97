"""The writer process: the consumer pipeline plus /health, /ready and /metrics on its own port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from common.clock import now_ms
from common.mongo import WRITER_STATUS
from common.settings import Settings
from common.transport import WriterTransport
from common.web import Probes, add_ops_routes, tier_app
from writer.balancer import Balancer
from writer.consumer import Consumer
from writer.metrics import WriterMetrics

log = logging.getLogger(__name__)


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
    task.add_done_callback(_stop_process_if_crashed)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _stop_process_if_crashed(task: asyncio.Task) -> None:
    """A consumer that died of a bug must not leave a writer that looks healthy but applies
    nothing: stop the process (its unacked events go to another writer; it gets restarted)."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("the writer pipeline crashed; stopping", exc_info=task.exception())
        os.kill(os.getpid(), signal.SIGTERM)


REPORT_EVERY_S = 5.0


async def report_status(settings: Settings, db: AsyncDatabase, transport: WriterTransport, consumer: Consumer,
                        metrics: WriterMetrics) -> None:
    """Every few seconds: queue depths into `genesis_queue_depth` (the backlog an outage leaves,
    and how fast it drains), and this writer's report into MongoDB's `writer_status`, which the
    query tier's `metrics/system` endpoint shows operators."""
    started, last = now_ms(), (time.monotonic(), 0, 0)
    while True:
        await asyncio.sleep(REPORT_EVERY_S)
        report: dict[str, Any] = {"started": started, "time": now_ms(), "store_up": consumer.store_healthy,
                                  "lag_s": round(consumer.last_lag_s, 3),
                                  "events_committed": consumer.events_committed,
                                  "points_written": consumer.points_written}
        t, events, points = time.monotonic(), consumer.events_committed, consumer.points_written
        report["events_per_s"] = round((events - last[1]) / max(t - last[0], 1e-9), 1)
        report["points_per_s"] = round((points - last[2]) / max(t - last[0], 1e-9), 1)
        last = (t, events, points)
        try:
            depths = await transport.depths()
            for partition, depth in depths.items():
                metrics.queue_depth.labels(str(partition)).set(depth)
            report["queue_depth"] = {str(p): d for p, d in depths.items()}
            report["dead_letter_depth"] = await transport.dead_letter_depth()
            metrics.dead_letter_depth.set(report["dead_letter_depth"])
        except Exception as exc:  # broker down: the gauges keep their last values
            log.debug("queue depth sample failed: %s", exc)
        with contextlib.suppress(Exception):  # MongoDB down: the last report stays (with its time)
            await db[WRITER_STATUS].replace_one({"_id": settings.instance_id}, report, upsert=True)


def install(app: web.Application, settings: Settings, deps: WriterDeps) -> Probes:
    """Run the consumer for the lifetime of `app`; return the writer's readiness probes."""
    metrics = WriterMetrics(deps.registry)
    consumer = Consumer(settings, deps.db, deps.transport, metrics)
    balancer = Balancer(deps.db, consumer, settings.instance_id, settings.partitions,
                        settings.writer_rebalance_interval_s)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        async with running(consumer):
            balancing = (asyncio.create_task(balancer.run_forever(), name="writer-balancer")
                         if settings.writer_rebalance_interval_s > 0 else None)
            sampling = asyncio.create_task(report_status(settings, deps.db, deps.transport, consumer, metrics),
                                           name="writer-status")
            yield
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            if balancing is not None:
                balancing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await balancing
                await balancer.leave()
        with contextlib.suppress(Exception):
            await deps.db[WRITER_STATUS].delete_one({"_id": settings.instance_id})
        await deps.transport.close()

    async def store_writes() -> None:
        if not consumer.store_healthy:
            raise RuntimeError("MongoDB writes are failing; batches are being retried")

    app.cleanup_ctx.append(lifecycle)
    return {"mongodb": lambda: deps.db.command("ping"), "queue": deps.transport.check, "writes": store_writes}


def create_app(settings: Settings, deps: WriterDeps) -> web.Application:
    app = tier_app("writer", deps.registry)
    add_ops_routes(app, deps.registry, install(app, settings, deps))
    return app
