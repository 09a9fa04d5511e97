"""Spreading partitions over writer replicas.

Every writer subscribes to every partition; single-active-consumer makes one of them apply it
and keeps the others as hot standbys (failover within seconds when a writer dies). To spread
the load, writers announce themselves with a heartbeat in MongoDB, compute the same
deterministic assignment (partition p belongs to the p-th live writer modulo their count), and
a writer that is applying a partition assigned to another live writer releases it: the broker
hands it to the next standby. A few rounds converge on one owner per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pymongo.asynchronous.database import AsyncDatabase

from common.clock import now_ms
from writer.consumer import Consumer

log = logging.getLogger(__name__)

WRITERS = "writers"


def assignment(me: str, live: list[str], partitions: int) -> set[int]:
    """The partitions `me` should apply, given the live writers (pure, the same on every writer)."""
    members = sorted(set(live) | {me})
    index, count = members.index(me), len(members)
    return {p for p in range(partitions) if p % count == index}


def to_release(busy: set[int], mine: set[int]) -> int | None:
    """One partition to give away this round (one at a time keeps handovers calm)."""
    foreign = sorted(busy - mine)
    return foreign[0] if foreign else None


class Balancer:
    def __init__(self, db: AsyncDatabase, consumer: Consumer, writer_id: str, partitions: int, interval_s: float):
        self._db = db
        self._consumer = consumer
        self._id = writer_id
        self._partitions = partitions
        self._interval = interval_s

    async def live_writers(self) -> list[str]:
        now = now_ms()
        await self._db[WRITERS].update_one({"_id": self._id}, {"$set": {"seen": now}}, upsert=True)
        fresh = now - int(self._interval * 3 * 1000)
        return [doc["_id"] async for doc in self._db[WRITERS].find({"seen": {"$gte": fresh}}, {"_id": 1})]

    async def step(self) -> int | None:
        mine = assignment(self._id, await self.live_writers(), self._partitions)
        partition = to_release(self._consumer.busy_partitions(self._interval * 2), mine)
        if partition is not None:
            log.info("releasing partition %d to the writer it is assigned to", partition)
            await self._consumer.release(partition)
        return partition

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.step()
            except Exception as exc:  # MongoDB away: keep what we have, try again next round
                log.warning("partition balancing skipped: %s", exc)

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await self._db[WRITERS].delete_one({"_id": self._id})
