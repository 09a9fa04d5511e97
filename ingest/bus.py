"""Publishing events and waiting for their commit (the write-ahead half of every request).

`EventBus.submit` wraps the event in an envelope, publishes it durably (publisher confirm),
and, in `committed` mode, waits for the writer's commit notice, which also carries the writer's
verdict (the authoritative param/lifecycle checks happen there, in partition order).
In-flight publishes are bounded: past the bound the client gets 503 + Retry-After at once.

Outages (the guarantees are in the README, "What ok means during an outage"):

* The broker is unreachable: a request waits up to `outage_hold_s` for the connection to come
  back, then answers 503 with a Retry-After that grows with the outage (`common/outage.py`).
  Nothing is acknowledged that the broker did not confirm.
* The event is confirmed by the broker but its commit notice does not come (MongoDB or every
  writer is down): the queue is the write-ahead log, so the request answers ok as an `enqueued`
  ack and says so in the `X-Genesis-Flow-Ack: enqueued` response header. While commits stay
  missing, requests wait only `commit_degraded_wait_s` for theirs; the first notice that arrives
  ends the degraded state.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid

from aiohttp import web
from opentelemetry import trace

from common import events as ev
from common.clock import now_ms
from common.errors import MlflowError
from common.outage import Outage
from common.settings import AckMode, Settings
from common.telemetry import inject_context
from common.transport import IngestTransport, QueueFull, TransportUnavailable, partition_of
from ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer("genesis_flow.ingest")


ACK_HEADER = "X-Genesis-Flow-Ack"
# What the request's writes were acknowledged as, when it was less than asked for ("enqueued"):
# set by the bus, turned into the response header by `ack_header_middleware`.
downgraded_ack: contextvars.ContextVar[str | None] = contextvars.ContextVar("downgraded_ack", default=None)


@web.middleware
async def ack_header_middleware(request: web.Request, handler):
    """`X-Genesis-Flow-Ack: enqueued` on a response whose writes were acknowledged as durable in
    the queue rather than committed (see `EventBus.submit`)."""
    token = downgraded_ack.set(None)
    try:
        response = await handler(request)
        ack = downgraded_ack.get()
        if ack is not None and response.status < 400:
            response.headers[ACK_HEADER] = ack
        return response
    finally:
        downgraded_ack.reset(token)


class CommitTracker:
    """Futures for events whose commit notice this replica awaits."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[ev.EventOutcome]] = {}
        self.last_notice = time.monotonic()

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
        self.last_notice = time.monotonic()
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
        self.queue_outage = Outage()
        self._degraded_since: float | None = None  # commits stopped arriving at this time

    def commits_degraded_for(self) -> float:
        return time.monotonic() - self._degraded_since if self.commits_degraded and self._degraded_since else 0.0

    @property
    def commits_degraded(self) -> bool:
        if self._degraded_since is not None and self._commits.last_notice > self._degraded_since:
            self._degraded_since = None  # notices flow again
        return self._degraded_since is not None

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
            # Standalone's queue is memory, no write-ahead log: there, only a commit is an ack.
            waiting = ack == "committed" or not self._transport.durable
            env = ev.Envelope(
                id=event_id, partition_key=key, published_at=now_ms(), event=event,
                reply_to=self._transport.reply_to if waiting else None, trace=inject_context(),
            )
            future = self._commits.expect(event_id) if waiting else None
            try:
                await self._publish(key, env, event)
            except TransportUnavailable as exc:
                self._commits.forget(event_id)
                self._metrics.rejected.labels("queue_unavailable").inc()
                raise MlflowError.unavailable(str(exc), retry_after=self.queue_outage.retry_after()) from exc
            self._metrics.published.inc()
            if future is None:
                return None
            wait_s = self._settings.commit_degraded_wait_s if self.commits_degraded else self._settings.commit_timeout_s
            try:
                outcome = await asyncio.wait_for(future, wait_s)
            except asyncio.TimeoutError:
                self._commits.forget(event_id)
                if not self._transport.durable:  # standalone: memory is no write-ahead log
                    self._metrics.rejected.labels("commit_timeout").inc()
                    raise MlflowError.unavailable(
                        "The write was not confirmed committed in time; retry it.", retry_after=2) from None
                # Durable in the queue, not (yet) in MongoDB: an enqueued ack, said so in a header.
                if self._degraded_since is None:
                    self._degraded_since = time.monotonic()
                    log.warning("commit notices stopped arriving: acknowledging writes as enqueued")
                self._metrics.degraded_acks.inc()
                downgraded_ack.set("enqueued")
                return None
        if outcome.error_code is not None:
            raise MlflowError(outcome.message or "", outcome.error_code)
        return outcome.assigned

    async def _publish(self, key: str, env: ev.Envelope, event: ev.Event) -> None:
        """Publish with a confirm; while the broker is unreachable, hold the request up to
        `outage_hold_s` for the connection to return (a re-publish after a lost confirm is
        harmless: every event applies idempotently)."""
        partition = partition_of(key, self._settings.partitions)
        deadline = time.monotonic() + self._settings.outage_hold_s
        while True:
            try:
                with tracer.start_as_current_span("ingest.publish", kind=trace.SpanKind.PRODUCER, attributes={
                        "genesis.event_id": env.id, "genesis.event_type": type(event).__name__,
                        "messaging.system": "rabbitmq", "messaging.destination.partition.id": str(partition)}):
                    await self._transport.publish(partition, ev.encode(env), env.id)
                self.queue_outage.recovered()
                return
            except QueueFull:
                raise
            except TransportUnavailable:
                self.queue_outage.failed()
                if time.monotonic() >= deadline:
                    raise
                await self._transport.wait_available(min(1.0, max(0.0, deadline - time.monotonic())))

    async def close(self) -> None:
        await self._transport.close()
