"""In-process transport for `genesis-flow standalone`.

Same interface as RabbitMQ, held in memory. It is only ever used with committed acks: a client
hears "ok" after the writer committed the event to MongoDB, so nothing acknowledged lives only
in this queue. Ordering per partition is kept by a single FIFO.
"""

from __future__ import annotations

import logging

from common.transport.base import DeliveryHandler, NoticeHandler, QueueFull, TransportUnavailable

log = logging.getLogger(__name__)


class InprocDelivery:
    __slots__ = ("body", "partition", "redelivered")
    stale = False  # one process, one consumer: nothing is ever handed to another writer

    def __init__(self, body: bytes, partition: int):
        self.body = body
        self.partition = partition
        self.redelivered = False


class InprocBroker:
    """Both ends of the in-memory queue; hand `.ingest` to ingest and `.writer` to the writer."""

    def __init__(self, max_length: int = 100_000):
        self._max_length = max_length
        self._on_delivery: DeliveryHandler | None = None
        self._on_notice: NoticeHandler | None = None
        self._backlog = 0
        self.dead_letters: list[tuple[bytes, str]] = []
        self.ingest = _IngestSide(self)
        self.writer = _WriterSide(self)


class _IngestSide:
    reply_to = "inproc"
    durable = False  # memory: an event is safe only once the writer committed it

    def __init__(self, broker: InprocBroker):
        self._b = broker

    def is_available(self) -> bool:
        return self._b._on_delivery is not None

    async def wait_available(self, timeout: float) -> None:
        return None  # available exactly while the writer runs in this process

    async def start(self, on_notice: NoticeHandler) -> None:
        self._b._on_notice = on_notice

    async def publish(self, partition: int, body: bytes, message_id: str) -> None:
        if self._b._on_delivery is None:
            raise TransportUnavailable("The writer is not running.")
        if self._b._backlog >= self._b._max_length:
            raise QueueFull("The event queue is full.")
        self._b._backlog += 1
        self._b._on_delivery(InprocDelivery(body, partition))

    async def check(self) -> None:
        if not self.is_available():
            raise TransportUnavailable("writer not running")

    async def close(self) -> None:
        self._b._on_notice = None


class _WriterSide:
    def __init__(self, broker: InprocBroker):
        self._b = broker

    async def start(self, on_delivery: DeliveryHandler) -> None:
        self._b._on_delivery = on_delivery

    async def ack(self, deliveries: list) -> None:
        self._b._backlog -= len(deliveries)

    async def release(self, partition: int) -> None:
        return None

    async def dead_letter(self, delivery: InprocDelivery, reason: str) -> None:
        log.error("dead-lettered event in standalone mode: %s", reason)
        self._b.dead_letters.append((delivery.body, reason))

    async def send_notice(self, reply_to: str, body: bytes) -> None:
        if self._b._on_notice is not None:
            self._b._on_notice(body)

    async def depths(self) -> dict[int, int]:
        return {0: self._b._backlog}  # one FIFO for every partition

    async def dead_letter_depth(self) -> int:
        return len(self._b.dead_letters)

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self._b._on_delivery = None
