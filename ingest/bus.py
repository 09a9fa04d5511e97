"""Publishing events and waiting for their commit (the write-ahead half of every request).

`EventBus.submit` wraps the event in an envelope, publishes it durably (publisher confirm),
and, in `committed` mode, waits for the writer's commit notice, which also carries the writer's
verdict (the authoritative param/lifecycle checks happen there, in partition order).
In-flight publishes are bounded: past the bound the client gets 503 + Retry-After at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from opentelemetry import trace

from common import events as ev
from common.clock import now_ms
from common.errors import MlflowError
from common.settings import AckMode, Settings
from common.telemetry import inject_context
from common.transport import IngestTransport, TransportUnavailable, partition_of
from ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer("genesis_flow.ingest")


class CommitTracker:
    """Futures for events whose commit notice this replica awaits."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[ev.EventOutcome]] = {}

    def expect(self, event_id: str) -> asyncio.Future[ev.EventOutcome]:
        fut: asyncio.Future[ev.EventOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[event_id] = fut
        return fut

    def forget(self, event_id: str) -> None:
        self._waiting.pop(event_id, None)

    def on_notice(self, body: bytes) -> None:
        try:
            notice = ev.decode_notice(body)
        except Exception:  # a malformed notice must not kill the consumer
            log.exception("malformed commit notice")
            return
        for outcome in notice.outcomes:
            fut = self._waiting.pop(outcome.id, None)
            if fut is not None and not fut.done():
                fut.set_result(outcome)

    def __len__(self) -> int:
        return len(self._waiting)


class EventBus:
    def __init__(self, settings: Settings, transport: IngestTransport, metrics: IngestMetrics):
        self._settings = settings
        self._transport = transport
        self._metrics = metrics
        self._commits = CommitTracker()
        self._slots = asyncio.Semaphore(settings.max_inflight_publishes)

    async def start(self) -> None:
        await self._transport.start(self._commits.on_notice)

    def is_available(self) -> bool:
        return self._transport.is_available()

    async def submit(self, event: ev.Event, ack: AckMode) -> int | None:
        """Return once the event is durable (`enqueued`) or committed (`committed`); raise
        MlflowError with the writer's verdict, or 503 when durability cannot be confirmed.
        A committed event returns what the writer assigned for it (a model version's number)."""
        if self._slots.locked():
            self._metrics.rejected.labels("inflight_limit").inc()
            raise MlflowError.unavailable("Too many writes in flight; retry shortly.")
        async with self._slots:
            event_id = uuid.uuid4().hex
            key = ev.partition_key(event)
            waiting = ack == "committed"
            env = ev.Envelope(
                id=event_id, partition_key=key, published_at=now_ms(), event=event,
                reply_to=self._transport.reply_to if waiting else None, trace=inject_context(),
            )
            future = self._commits.expect(event_id) if waiting else None
            try:
                partition = partition_of(key, self._settings.partitions)
                with tracer.start_as_current_span("ingest.publish", kind=trace.SpanKind.PRODUCER, attributes={
                        "genesis.event_id": event_id, "genesis.event_type": type(event).__name__,
                        "messaging.system": "rabbitmq", "messaging.destination.partition.id": str(partition)}):
                    await self._transport.publish(partition, ev.encode(env), event_id)
            except TransportUnavailable as exc:
                self._commits.forget(event_id)
                self._metrics.rejected.labels("queue_unavailable").inc()
                raise MlflowError.unavailable(str(exc)) from exc
            self._metrics.published.inc()
            if future is None:
                return None
            try:
                outcome = await asyncio.wait_for(future, self._settings.commit_timeout_s)
            except asyncio.TimeoutError:
                self._commits.forget(event_id)
                self._metrics.rejected.labels("commit_timeout").inc()
                raise MlflowError.unavailable(
                    "The write is queued but was not confirmed committed in time; retry it.") from None
        if outcome.error_code is not None:
            raise MlflowError(outcome.message or "", outcome.error_code)
        return outcome.assigned

    async def close(self) -> None:
        await self._transport.close()
