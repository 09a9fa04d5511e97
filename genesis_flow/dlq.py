"""`genesis-flow dlq list|replay`: look at poison events and send them back once fixed."""

from __future__ import annotations

import json
from typing import Any

import aio_pika
import msgspec

from common import events as ev
from common.settings import Settings
from common.transport.amqp import ORIGIN_HEADER, REASON_HEADER, connect, declare_topology, dlq_name


def describe(message: aio_pika.abc.AbstractIncomingMessage) -> dict[str, Any]:
    headers = dict(message.headers or {})
    reason = headers.get(REASON_HEADER)
    origin = headers.get(ORIGIN_HEADER) or headers.get("x-first-death-queue")
    if reason is None and headers.get("x-first-death-reason"):
        reason = f"broker: {headers['x-first-death-reason']} (delivery limit reached)"
    info: dict[str, Any] = {"message_id": message.message_id, "origin": _text(origin), "reason": _text(reason),
                            "bytes": len(message.body)}
    try:
        env = ev.decode_envelope(message.body)
        info["event"] = {"id": env.id, "type": type(env.event).__name__, "partition_key": env.partition_key}
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        info["event"] = {"undecodable": str(exc)}
    return info


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def run_dlq(settings: Settings, command: str, limit: int | None) -> int:
    conn = await connect(settings, "dlq")
    try:
        channel = await conn.channel(publisher_confirms=True)
        await declare_topology(channel, settings)
        queue = await channel.get_queue(dlq_name(settings.queue_prefix))
        if command == "list":
            return await _list(queue, limit or 100)
        return await _replay(channel, queue, limit)
    finally:
        await conn.close()


async def _list(queue: aio_pika.abc.AbstractQueue, limit: int) -> int:
    seen = []
    try:
        while len(seen) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            seen.append(message)
            print(json.dumps(describe(message)))
    finally:
        for message in seen:  # listing leaves the queue as it was
            await message.nack(requeue=True)
    print(json.dumps({"listed": len(seen)}))
    return 0


async def _replay(channel: aio_pika.abc.AbstractChannel, queue: aio_pika.abc.AbstractQueue, limit: int | None) -> int:
    # Only what is dead-lettered now: an event that fails again comes back to this queue while we
    # run (a fast writer within milliseconds) and must not be replayed over and over.
    waiting = (await channel.declare_queue(queue.name, passive=True)).declaration_result.message_count
    limit = waiting if limit is None else min(limit, waiting)
    replayed = 0
    while limit is None or replayed < limit:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        info = describe(message)
        origin = info["origin"]
        if not origin:
            print(json.dumps({"skipped": info, "why": "no origin queue recorded"}))
            await message.nack(requeue=True)
            break
        headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
        await channel.default_exchange.publish(
            aio_pika.Message(message.body, headers=headers, message_id=message.message_id,
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=origin,
        )
        await message.ack()
        replayed += 1
        print(json.dumps({"replayed": info}))
    print(json.dumps({"replayed_count": replayed}))
    return 0
