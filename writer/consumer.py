"""The writer's pipeline: collect -> decode -> load -> plan -> write -> notify -> ack.

Up to `writer_inflight_batches` batches are in this pipeline at once, never two with events of one
partition (`writer/batcher.py` Scheduler): one batch's MongoDB round trips overlap another's, and
each partition's events still apply in order, one batch after the other. The run documents a batch
leaves are kept (`writer/run_cache.py`), so the next batch of a hot run reads none.

Acks go to the broker only after MongoDB accepted the batch, so a crash at any point means
redelivery, and the idempotent plan makes redelivery harmless (at-least-once delivery,
exactly-once effect). MongoDB outages stop the pipeline (nothing acked, retried with backoff)
instead of losing or dead-lettering events. An event MongoDB refuses for good, or one the
planner cannot handle, is isolated by bisecting the batch and dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

from opentelemetry import trace
from pymongo.asynchronous.database import AsyncDatabase

from common import events as ev
from common import writer_pause
from common.clock import now_ms
from common.errors import INTERNAL_ERROR, MlflowError
from common.settings import Settings
from common.telemetry import extract_context
from common.transport import Delivery, WriterTransport
from writer.batcher import Batch, Scheduler
from writer.gate import BatchGate
from writer.metrics import WriterMetrics
from writer.plan import plan_batch
from writer.run_cache import RunCache
from writer.store import StoreRejected, StoreUnavailable, apply_plan, load_state

log = logging.getLogger(__name__)
tracer = trace.get_tracer("genesis_flow.writer")

Outcomes = dict[str, MlflowError | None]
POISON_ATTEMPTS = 3  # tries of a lone event before it goes to the dead-letter queue


def write_token(envelopes: list[ev.Envelope]) -> str:
    """The same for every attempt at these events: what lets a late write be recognised."""
    digest = hashlib.blake2b(digest_size=8)
    for env in envelopes:
        digest.update(env.id.encode())
    return digest.hexdigest()


@dataclass
class _Poison:
    delivery: Delivery
    envelope: ev.Envelope
    reason: str


class Consumer:
    def __init__(self, settings: Settings, db: AsyncDatabase, transport: WriterTransport, metrics: WriterMetrics):
        self._settings = settings
        self._db = db
        self._transport = transport
        self._metrics = metrics
        self._scheduler = Scheduler(max_events=settings.batch_max_events, max_points=settings.batch_max_points,
                                    max_wait_s=settings.batch_max_wait_ms / 1000)
        # Batches hold it shared; releasing a partition and a backup's pause hold it exclusively.
        self._applying = BatchGate()
        # More batches in flight overlap round trips (latency-bound load); the scheduler forms a batch
        # only from free partitions, so under heavy load the first takes every partition anyway.
        self._slots = asyncio.Semaphore(max(1, settings.writer_inflight_batches))
        self._inflight: set[asyncio.Task[None]] = set()
        self._failed: BaseException | None = None
        self._runs = RunCache(settings.run_cache_ttl_s)  # saves the run read of most batches
        self._last_delivery: dict[int, float] = {}
        self.store_healthy = True
        self.batches_committed = 0
        self.events_committed = 0  # plain totals for the status report (`writer/app.py`)
        self.points_written = 0
        self.last_lag_s = 0.0

    def on_delivery(self, delivery: Delivery) -> None:
        self._last_delivery[delivery.partition] = time.monotonic()
        self._scheduler.put(delivery)

    def busy_partitions(self, within_s: float) -> set[int]:
        """Partitions this writer received events from lately: the ones it is active on."""
        cutoff = time.monotonic() - within_s
        return {p for p, t in self._last_delivery.items() if t >= cutoff}

    async def release(self, partition: int) -> None:
        """Hand `partition` to another writer between batches. Its events still in our inbox
        become stale with the channel and are skipped; the broker redelivers them, in order,
        to the writer that takes over."""
        async with self._applying:
            await self._transport.release(partition)
            self._last_delivery.pop(partition, None)
            self._runs.clear()  # another writer applies these runs' events from now on

    async def start(self) -> None:
        await self._transport.start(self.on_delivery)

    async def run_forever(self) -> None:
        # Backups pause the writers between batches (`common/writer_pause.py`): while a pause is
        # in force, its watcher holds `_applying` exclusively, so no batch is half-applied in the dump.
        try:
            async with writer_pause.watching(self._db, self._settings.instance_id, self._applying):
                while True:
                    await self._slots.acquire()
                    if self._failed is not None:
                        raise self._failed
                    batch, partitions = await self._scheduler.next_batch()
                    task = asyncio.create_task(self._apply(batch, partitions))
                    self._inflight.add(task)
                    task.add_done_callback(self._finished)
        finally:
            for task in list(self._inflight):
                task.cancel()

    async def _apply(self, batch: Batch, partitions: set[int]) -> None:
        try:
            async with self._applying.shared():
                await self.process(batch.without_stale())
            # Only now may the partitions' next events go: after a failure they stay busy, so
            # nothing overtakes the unapplied batch before the process stops.
            self._scheduler.done(partitions)
        finally:
            self._slots.release()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failed is None:
            # Nothing of the batch was acked: the broker redelivers it. Stop like before, at once.
            self._failed = task.exception()
            self._scheduler.abort(self._failed)

    async def process(self, batch: Batch) -> None:
        for delivery, reason in batch.poison:
            await self._dead_letter(delivery, reason)
        envelopes = [env for _, env in batch.events]
        outcomes: Outcomes = {}
        assigned: dict[str, int] = {}
        poison: list[_Poison] = []
        start = time.perf_counter()
        spans = self._start_event_spans(envelopes)
        # The batch span (and the MongoDB spans under it) joins the trace of the first traced
        # request in the batch and links the others, so each request's trace reaches MongoDB.
        traced = [extract_context(env.trace) for env in envelopes if env.trace]
        links = [trace.Link(trace.get_current_span(ctx).get_span_context()) for ctx in traced]
        with tracer.start_as_current_span("writer.batch", context=traced[0] if traced else None, links=links,
                                          attributes={"genesis.events": len(envelopes)}):
            if envelopes:
                await self._commit(batch.events, outcomes, poison, assigned)
        for p in poison:
            await self._dead_letter(p.delivery, p.reason)
            outcomes[p.envelope.id] = MlflowError(
                f"The write could not be applied and was set aside for an operator: {p.reason}", INTERNAL_ERROR)
        self._end_event_spans(spans, outcomes)
        await self._notify(envelopes, outcomes, assigned)
        await self._transport.ack(batch.deliveries)
        self._metrics.commit_seconds.observe(time.perf_counter() - start)
        if envelopes:
            self.last_lag_s = max(0.0, (now_ms() - min(env.published_at for env in envelopes)) / 1000)
            self._metrics.lag.set(self.last_lag_s)
        self._metrics.batches.inc()
        self._metrics.batch_events.observe(len(batch.deliveries))
        self.batches_committed += 1

    async def _commit(self, items: list[tuple[Delivery, ev.Envelope]], outcomes: Outcomes, poison: list[_Poison],
                      assigned: dict[str, int], *, replay: bool = False) -> None:
        """Commit `items` in order, retrying outages; bisect to isolate events MongoDB refuses."""
        envelopes = [env for _, env in items]
        # Redelivered events (a writer crashed or handed the partition over) and retried batches
        # may find buckets stored without the run's bookkeeping: read what is stored.
        conservative = replay or any(d.redelivered for d, _ in items)
        token = write_token(envelopes)
        backoff = 0.1
        refusals = 0
        while True:
            try:
                state = await load_state(self._db, envelopes, conservative=conservative, cached_runs=self._runs)
                plan = plan_batch(envelopes, state, self._settings.metric_bucket_size, token)
                await apply_plan(self._db, plan)
                self._runs.put(plan.run_docs)
                for env in envelopes:  # their runs' lifecycle changed under our cached documents
                    if isinstance(env.event, (ev.ExperimentDeleted, ev.ExperimentRestored)):
                        self._runs.forget_experiment(env.event.experiment_id)
            except StoreUnavailable as exc:
                self._runs.clear()  # part of the batch may be stored: cached documents may be behind
                self._set_store_health(False)
                self._metrics.store_retries.inc()
                log.warning("MongoDB unavailable, retrying batch of %d in %.1fs: %s", len(envelopes), backoff, exc)
                conservative = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except (StoreRejected, Exception) as exc:  # noqa: BLE001 - isolate whatever refuses to apply
                self._runs.clear()
                if len(items) == 1:
                    refusals += 1
                    if refusals < POISON_ATTEMPTS:  # an unlisted transient error must not cost an event
                        conservative = True
                        await asyncio.sleep(0.2 * refusals)
                        continue
                    log.error("event %s is poison: %s", envelopes[0].id, exc)
                    poison.append(_Poison(items[0][0], envelopes[0], f"{type(exc).__name__}: {exc}"[:1000]))
                    return
                mid = len(items) // 2
                # part of the batch may be written: the halves replay it
                await self._commit(items[:mid], outcomes, poison, assigned, replay=True)
                await self._commit(items[mid:], outcomes, poison, assigned, replay=True)
                return
            self._set_store_health(True)
            outcomes.update(plan.outcomes)
            assigned.update(plan.assigned)
            self._count(plan.outcomes, plan)
            return

    def _set_store_health(self, healthy: bool) -> None:
        self.store_healthy = healthy
        self._metrics.store_up.set(1 if healthy else 0)

    def _count(self, outcomes: Outcomes, plan) -> None:
        rejected = sum(1 for o in outcomes.values() if o is not None)
        self.events_committed += len(outcomes) - rejected
        self.points_written += plan.points_written
        self._metrics.events.labels("committed").inc(len(outcomes) - rejected)
        if rejected:
            self._metrics.events.labels("rejected").inc(rejected)
        self._metrics.points_written.inc(plan.points_written)
        self._metrics.points_dropped.inc(plan.points_dropped)
        self._metrics.spans_written.inc(plan.spans_written)
        self._metrics.spans_dropped.inc(plan.spans_dropped)
        for w in plan.writes:
            self._metrics.documents_written.labels(w.collection).inc()

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._metrics.dead_letters.inc()
        await self._transport.dead_letter(delivery, reason)

    async def _notify(self, envelopes: list[ev.Envelope], outcomes: Outcomes, assigned: dict[str, int]) -> None:
        by_origin: dict[str, list[ev.EventOutcome]] = defaultdict(list)
        for env in envelopes:
            if env.reply_to is None:
                continue
            err = outcomes.get(env.id)
            by_origin[env.reply_to].append(
                ev.EventOutcome(env.id, assigned=assigned.get(env.id)) if err is None
                else ev.EventOutcome(env.id, err.error_code, err.message)
            )
        for reply_to, results in by_origin.items():
            await self._transport.send_notice(reply_to, ev.encode(ev.CommitNotice(results)))

    def _start_event_spans(self, envelopes: list[ev.Envelope]) -> list[tuple[str, trace.Span]]:
        """One span per traced event, parented to the HTTP request that published it."""
        spans = []
        for env in envelopes:
            if env.trace:
                span = tracer.start_span("writer.commit", context=extract_context(env.trace), kind=trace.SpanKind.CONSUMER,
                                         attributes={
                    "genesis.event_id": env.id, "genesis.event_type": type(env.event).__name__})
                spans.append((env.id, span))
        return spans

    def _end_event_spans(self, spans: list[tuple[str, trace.Span]], outcomes: Outcomes) -> None:
        for event_id, span in spans:
            err = outcomes.get(event_id)
            if err is not None:
                span.set_attribute("mlflow.error_code", err.error_code)
            span.end()
