"""RabbitMQ transport (aio-pika).

Topology, declared idempotently by whichever process starts first:

* ``<prefix>.events.<i>`` for i in range(partitions): durable quorum queues, single active
  consumer (one writer applies a partition at a time, in publish order), a delivery limit after
  which the broker dead-letters a message, and a length limit with ``reject-publish`` so a full
  queue nacks the publish (ingest answers 503) instead of dropping old events.
* ``<prefix>.dlq``: durable quorum queue for poison events, with the reason in headers.
* ``<prefix>.commits.<instance>``: one exclusive queue per ingest replica for commit notices.

Events are published persistent, to the default exchange, mandatory, with publisher confirms.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from common.settings import Settings
from common.transport.base import DeliveryHandler, NoticeHandler, QueueFull, TransportUnavailable

log = logging.getLogger(__name__)

REASON_HEADER = "x-genesis-reason"
ORIGIN_HEADER = "x-genesis-origin-queue"


def events_queue(prefix: str, partition: int) -> str:
    return f"{prefix}.events.{partition}"


def dlq_name(prefix: str) -> str:
    return f"{prefix}.dlq"


def events_queue_arguments(settings: Settings) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-single-active-consumer": True,
        "x-delivery-limit": settings.delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dlq_name(settings.queue_prefix),
        "x-max-length": settings.queue_max_length,
        "x-overflow": "reject-publish",
    }


async def declare_topology(channel: AbstractChannel, settings: Settings) -> list[aio_pika.abc.AbstractQueue]:
    await channel.declare_queue(dlq_name(settings.queue_prefix), durable=True, arguments={"x-queue-type": "quorum"})
    queues = []
    args = events_queue_arguments(settings)
    for i in range(settings.partitions):
        queues.append(await channel.declare_queue(events_queue(settings.queue_prefix, i), durable=True, arguments=args))
    return queues


STARTUP_WAIT_S = 300.0  # a tier started while the broker is away waits for it this long


async def connect(settings: Settings, name: str) -> AbstractRobustConnection:
    """The robust connection reconnects by itself once made; the first connection is retried
    here, so a tier started during a broker outage waits for the broker (not ready meanwhile)
    instead of exiting."""
    deadline = asyncio.get_running_loop().time() + STARTUP_WAIT_S
    delay = 0.5
    while True:
        try:
            return await aio_pika.connect_robust(
                settings.amqp_url,
                client_properties={"connection_name": f"genesis-flow {name} {settings.instance_id}"},
                reconnect_interval=0.5,
                fail_fast=True,
            )
        except aiormq.exceptions.ProbableAuthenticationError:
            raise  # wrong credentials do not get better by waiting
        except (aiormq.exceptions.AMQPConnectionError, ConnectionError, OSError) as exc:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise
            log.warning("RabbitMQ is not reachable (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class AmqpIngestTransport:
    durable = True  # persistent messages on quorum queues, confirmed by the broker

    def __init__(self, settings: Settings):
        self._settings = settings
        self._conn: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._reply_to = f"{settings.queue_prefix}.commits.{settings.instance_id}"

    @property
    def reply_to(self) -> str:
        return self._reply_to

    def is_available(self) -> bool:
        return (
            self._conn is not None and self._conn.connected.is_set()
            and self._channel is not None and not self._channel.is_closed
        )

    async def wait_available(self, timeout: float) -> None:
        # The robust connection reconnects on its own (every 0.5 s); its channel follows.
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.is_available() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)

    async def start(self, on_notice: NoticeHandler) -> None:
        self._conn = await connect(self._settings, "ingest")
        self._channel = await self._conn.channel(publisher_confirms=True, on_return_raises=True)
        await declare_topology(self._channel, self._settings)
        inbox = await self._channel.declare_queue(self._reply_to, exclusive=True, auto_delete=True)

        async def deliver(message: AbstractIncomingMessage) -> None:
            on_notice(message.body)

        await inbox.consume(deliver, no_ack=True)

    async def publish(self, partition: int, body: bytes, message_id: str) -> None:
        if not self.is_available():
            raise TransportUnavailable("The event queue is not reachable.")
        assert self._channel is not None
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            content_type="application/msgpack",
        )
        try:
            await self._channel.default_exchange.publish(
                message,
                routing_key=events_queue(self._settings.queue_prefix, partition),
                mandatory=True,
                timeout=self._settings.publish_timeout_s,
            )
        except aio_pika.exceptions.DeliveryError as exc:  # nack: queue over its length limit
            raise QueueFull("The event queue is full.") from exc
        except (asyncio.TimeoutError, aio_pika.exceptions.AMQPError, aiormq.exceptions.AMQPError,
                ConnectionError, RuntimeError) as exc:
            raise TransportUnavailable(f"The event queue did not confirm the write: {type(exc).__name__}") from exc

    async def check(self) -> None:
        if not self.is_available():
            raise TransportUnavailable("RabbitMQ connection is down")

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


def _channel_of(message: AbstractIncomingMessage):
    """The open channel a message came on, or None once that channel closed."""
    try:
        channel = message.channel
    except aiormq.exceptions.ChannelInvalidStateError:
        return None
    return None if channel.is_closed else channel


class AmqpDelivery:
    __slots__ = ("message", "body", "partition", "redelivered")

    def __init__(self, message: AbstractIncomingMessage, partition: int):
        self.message = message
        self.body = message.body
        self.partition = partition
        self.redelivered = bool(message.redelivered)

    @property
    def stale(self) -> bool:
        """Its channel closed (released partition, lost connection): the broker has already
        put it back in the queue for whoever consumes the partition now."""
        return _channel_of(self.message) is None


class AmqpWriterTransport:
    """One channel per partition, each consuming its queue. Single-active-consumer lets one
    writer apply a partition at a time; the others wait as hot standbys. `release` closes a
    partition's channel (the broker returns its unacked events to the head of the queue and
    activates the next waiting writer) and subscribes again at the back of the line."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._conn: AbstractRobustConnection | None = None
        self._channels: dict[int, AbstractChannel] = {}
        self._publish: AbstractChannel | None = None
        self._on_delivery: DeliveryHandler | None = None

    async def start(self, on_delivery: DeliveryHandler) -> None:
        self._on_delivery = on_delivery
        self._conn = await connect(self._settings, "writer")
        self._publish = await self._conn.channel(publisher_confirms=True)
        await declare_topology(self._publish, self._settings)
        for partition in range(self._settings.partitions):
            await self._subscribe(partition)

    async def _subscribe(self, partition: int) -> None:
        assert self._conn is not None and self._on_delivery is not None
        channel = await self._conn.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._settings.prefetch)
        queue = await channel.declare_queue(events_queue(self._settings.queue_prefix, partition), durable=True,
                                            arguments=events_queue_arguments(self._settings))
        on_delivery = self._on_delivery

        async def deliver(message: AbstractIncomingMessage) -> None:
            on_delivery(AmqpDelivery(message, partition))

        await queue.consume(deliver, no_ack=False)
        self._channels[partition] = channel

    async def release(self, partition: int) -> None:
        channel = self._channels.pop(partition, None)
        if channel is not None:
            await channel.close()
        await self._subscribe(partition)

    async def ack(self, deliveries: list[Any]) -> None:
        # One ack(multiple) per underlying channel: deliveries arrive in tag order on a channel
        # and batches are applied in arrival order, so the last tag covers the whole batch.
        # A delivery from a channel that has since closed is skipped: the broker redelivers it
        # and the writer's idempotent apply makes that harmless.
        last: dict[int, AbstractIncomingMessage] = {}
        for d in deliveries:
            ch = _channel_of(d.message)
            if ch is not None:
                last[id(ch)] = d.message
        for message in last.values():
            try:
                await message.ack(multiple=True)
            except Exception as exc:  # channel closed between check and ack: redelivery covers it
                log.warning("ack failed, events will be redelivered: %s", exc)

    async def dead_letter(self, delivery: Any, reason: str) -> None:
        assert self._publish is not None
        message: AbstractIncomingMessage = delivery.message
        headers = dict(message.headers or {})
        headers[REASON_HEADER] = reason[:1000]
        headers[ORIGIN_HEADER] = events_queue(self._settings.queue_prefix, delivery.partition)
        await self._publish.default_exchange.publish(
            aio_pika.Message(message.body, headers=headers, message_id=message.message_id,
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=dlq_name(self._settings.queue_prefix),
        )

    async def send_notice(self, reply_to: str, body: bytes) -> None:
        assert self._publish is not None
        try:
            # Not mandatory: the ingest replica may be gone; its client then gets a 503 and retries.
            await self._publish.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT),
                routing_key=reply_to, mandatory=False,
            )
        except Exception as exc:
            log.warning("commit notice to %s not sent: %s", reply_to, exc)

    async def _message_counts(self, names: list[str]) -> list[int]:
        # A channel of its own: a failed passive declare closes the channel it ran on.
        assert self._conn is not None
        channel = await self._conn.channel(publisher_confirms=False)
        try:
            counts = []
            for name in names:
                queue = await channel.declare_queue(name, passive=True)
                counts.append(int(queue.declaration_result.message_count or 0))
            return counts
        finally:
            await channel.close()

    async def depths(self) -> dict[int, int]:
        names = [events_queue(self._settings.queue_prefix, p) for p in range(self._settings.partitions)]
        return dict(enumerate(await self._message_counts(names)))

    async def dead_letter_depth(self) -> int:
        return (await self._message_counts([dlq_name(self._settings.queue_prefix)]))[0]

    async def check(self) -> None:
        if self._conn is None or not self._conn.connected.is_set():
            raise TransportUnavailable("RabbitMQ connection is down")

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
