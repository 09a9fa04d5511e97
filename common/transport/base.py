"""What ingest and writer need from the queue, independent of RabbitMQ."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Protocol


class TransportUnavailable(Exception):
    """The queue cannot take the event durably right now (down, full, or too slow): answer 503."""


class QueueFull(TransportUnavailable):
    """The partition is at its length limit: waiting for the broker to come back will not help."""


def partition_of(partition_key: str, partitions: int) -> int:
    """Stable partition for a run (or experiment): all its events land in one ordered queue."""
    return zlib.crc32(partition_key.encode()) % partitions


class Delivery(Protocol):
    body: bytes
    partition: int
    redelivered: bool

    @property
    def stale(self) -> bool:
        """True once the broker has taken it back (it will be delivered again)."""
        ...


NoticeHandler = Callable[[bytes], None]
DeliveryHandler = Callable[[Delivery], None]


class IngestTransport(Protocol):
    """Publishing side: durable publish with broker confirm, plus this replica's notice inbox."""

    @property
    def reply_to(self) -> str: ...

    # True when a confirmed publish survives this process (a broker); False for memory.
    durable: bool

    def is_available(self) -> bool: ...

    async def wait_available(self, timeout: float) -> None:
        """Return when the broker is reachable again, or after `timeout` seconds."""
        ...

    async def start(self, on_notice: NoticeHandler) -> None: ...

    async def publish(self, partition: int, body: bytes, message_id: str) -> None:
        """Return once the event is durable in the queue; raise TransportUnavailable otherwise."""
        ...

    async def check(self) -> None:
        """Raise if the broker is not reachable (readiness)."""
        ...

    async def close(self) -> None: ...


class WriterTransport(Protocol):
    """Consuming side: ordered deliveries per partition, acks, dead letters and commit notices."""

    async def start(self, on_delivery: DeliveryHandler) -> None: ...

    async def ack(self, deliveries: list[Delivery]) -> None: ...

    async def release(self, partition: int) -> None:
        """Hand the partition to the next waiting writer; keep standing by for it."""
        ...

    async def dead_letter(self, delivery: Delivery, reason: str) -> None: ...

    async def send_notice(self, reply_to: str, body: bytes) -> None: ...

    async def depths(self) -> dict[int, int]:
        """Events waiting per partition (for /metrics)."""
        ...

    async def dead_letter_depth(self) -> int:
        """Events waiting in the dead-letter queue."""
        ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...

