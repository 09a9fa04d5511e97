"""Collect deliveries into batches and decode them; undecodable events are set aside as poison."""

from __future__ import annotations

import asyncio
from collections import deque
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


class Scheduler:
    """Deliveries per partition, handed out as batches that never share a partition with a batch
    still in flight: several batches can be applied at once (their MongoDB round trips overlap)
    while each partition's events are still applied one batch at a time, in arrival order.

    A batch is everything ready, across the partitions that are free, when a slot opens (group
    commit: no waiting for more). Under light load a request need not wait for an unrelated
    batch to finish; under heavy load the first batch takes every partition and the next forms
    only as partitions come free, so batches stay large."""

    def __init__(self, *, max_events: int, max_points: int, max_wait_s: float = 0.0):
        self.max_events = max_events
        self.max_points = max_points
        self.max_wait_s = max_wait_s  # linger before taking a batch (0: take what is ready)
        self._ready: dict[int, deque[Delivery]] = {}
        self._busy: set[int] = set()
        self._wake = asyncio.Event()
        self._turn = 0  # rotates the partition a batch starts from, for fairness
        self._aborted: BaseException | None = None

    def put(self, delivery: Delivery) -> None:
        self._ready.setdefault(delivery.partition, deque()).append(delivery)
        self._wake.set()

    def pending(self) -> int:
        return sum(len(q) for q in self._ready.values())

    def _free(self) -> list[int]:
        free = sorted(p for p, q in self._ready.items() if q and p not in self._busy)
        if not free:
            return free
        self._turn = (self._turn + 1) % len(free)
        return free[self._turn:] + free[:self._turn]

    async def next_batch(self) -> tuple[Batch, set[int]]:
        """Wait for events of a free partition; take what is ready (up to the limits) and mark
        the partitions taken busy until `done`."""
        while not (free := self._free()):
            if self._aborted is not None:
                raise self._aborted
            self._wake.clear()
            await self._wake.wait()
        if self.max_wait_s > 0 and self.pending() < self.max_events:
            await asyncio.sleep(self.max_wait_s)  # let more arrive (only adds latency when idle)
            free = self._free()
        batch, taken = Batch(), set()
        for partition in free:
            queue = self._ready[partition]
            while queue and len(batch.deliveries) < self.max_events and batch.points < self.max_points:
                decode_into(batch, queue.popleft())
                taken.add(partition)
        self._busy |= taken
        return batch, taken

    def done(self, partitions: set[int]) -> None:
        self._busy -= partitions
        self._wake.set()

    def abort(self, exc: BaseException) -> None:
        """Make the waiting `next_batch` raise `exc` (a batch failed: the pipeline stops)."""
        self._aborted = exc
        self._wake.set()
