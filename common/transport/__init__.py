"""The write-ahead queue behind one interface: RabbitMQ (`amqp`) or in-process (`inproc`)."""

from common.transport.base import (
    Delivery,
    IngestTransport,
    QueueFull,
    TransportUnavailable,
    WriterTransport,
    partition_of,
)

__all__ = ["Delivery", "IngestTransport", "QueueFull", "TransportUnavailable", "WriterTransport", "partition_of"]
