"""Collect deliveries into batches and decode them; undecodable events are set aside as poison."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import msgspec

from common import events as ev
from common.transport import Delivery


@dataclass
class Batch:
    deliveries: list[Delivery] = field(default_factory=list)  # everything to ack, in arrival order
    events: list[tuple[Delivery, ev.Envelope]] = field(default_factory=list)
    poison: list[tuple[Delivery, str]] = field(default_factory=list)
    points: int = 0

    def without_stale(self) -> "Batch":
        """Drop deliveries the broker took back (their channel closed): another writer, or this
        one again, applies them in order on redelivery; applying them now could reorder."""
        if not any(d.stale for d in self.deliveries):
            return self
        return Batch(
            deliveries=[d for d in self.deliveries if not d.stale],
            events=[(d, e) for d, e in self.events if not d.stale],
            poison=[(d, r) for d, r in self.poison if not d.stale],
            points=self.points,
        )


def decode_into(batch: Batch, delivery: Delivery) -> None:
    batch.deliveries.append(delivery)
    try:
        env = ev.decode_envelope(delivery.body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        batch.poison.append((delivery, f"undecodable event: {exc}"))
        return
    batch.events.append((delivery, env))
    if isinstance(env.event, ev.RunDataLogged):
        batch.points += len(env.event.metrics) + len(env.event.params) + len(env.event.tags)
    elif isinstance(env.event, ev.SpansLogged):
        batch.points += len(env.event.spans)
    else:
        batch.points += 1


async def collect(inbox: asyncio.Queue[Delivery], *, max_events: int, max_points: int, max_wait_s: float) -> Batch:
    """Wait for one delivery, then take whatever else is ready (group commit): up to the limits,
    waiting at most `max_wait_s` for more. Under load batches fill at once; when idle, a lone
    event waits only `max_wait_s`."""
    batch = Batch()
    decode_into(batch, await inbox.get())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    while len(batch.deliveries) < max_events and batch.points < max_points:
        try:
            decode_into(batch, inbox.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            decode_into(batch, await asyncio.wait_for(inbox.get(), remaining))
        except asyncio.TimeoutError:
            break
    return batch
