"""The writer's batch scheduling, its shared/exclusive gate and its run cache, without servers."""

from __future__ import annotations

import asyncio
import time

import pytest

from common import events as ev
from writer.batcher import Scheduler
from writer.gate import BatchGate
from writer.run_cache import RunCache


class FakeDelivery:
    redelivered = False
    stale = False

    def __init__(self, partition: int, n: int):
        self.partition = partition
        event = ev.RunDataLogged(f"run{partition}", metrics=[ev.Metric("m", float(n), n, n)])
        self.body = ev.encode(ev.Envelope(id=f"p{partition}-{n}", partition_key=f"run{partition}",
                                          published_at=0, event=event))


def ids(batch) -> list[str]:
    return [env.id for _, env in batch.events]


async def test_a_busy_partition_is_left_out_until_its_batch_is_done_and_order_is_kept() -> None:
    s = Scheduler(max_events=100, max_points=10_000)
    for n in range(3):
        s.put(FakeDelivery(0, n))
    s.put(FakeDelivery(1, 0))
    first, taken = await s.next_batch()
    assert taken == {0, 1} and sorted(ids(first)) == ["p0-0", "p0-1", "p0-2", "p1-0"]
    s.put(FakeDelivery(0, 3))
    s.put(FakeDelivery(2, 0))
    second, taken2 = await s.next_batch()  # partition 0 is in flight: only partition 2 goes
    assert taken2 == {2} and ids(second) == ["p2-0"]
    waiting = asyncio.create_task(s.next_batch())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing free to take
    s.done(taken)
    third, taken3 = await asyncio.wait_for(waiting, 1)
    assert taken3 == {0} and ids(third) == ["p0-3"]


async def test_batches_respect_the_event_limit_and_take_the_rest_next() -> None:
    s = Scheduler(max_events=2, max_points=10_000)
    for n in range(5):
        s.put(FakeDelivery(0, n))
    batch, taken = await s.next_batch()
    assert ids(batch) == ["p0-0", "p0-1"]
    s.done(taken)
    batch, _ = await s.next_batch()
    assert ids(batch) == ["p0-2", "p0-3"] and s.pending() == 1


async def test_abort_wakes_a_waiting_scheduler() -> None:
    s = Scheduler(max_events=10, max_points=10)
    waiting = asyncio.create_task(s.next_batch())
    await asyncio.sleep(0.01)
    s.abort(RuntimeError("batch failed"))
    with pytest.raises(RuntimeError, match="batch failed"):
        await asyncio.wait_for(waiting, 1)


async def test_the_exclusive_holder_waits_for_shared_ones_and_blocks_new_ones() -> None:
    gate = BatchGate()
    log: list[str] = []

    async def batch(name: str, hold: float) -> None:
        async with gate.shared():
            log.append(f"{name} start")
            await asyncio.sleep(hold)
            log.append(f"{name} end")

    async def pause() -> None:
        async with gate:
            log.append("pause")
            await asyncio.sleep(0.02)
            log.append("resume")

    first = asyncio.create_task(batch("a", 0.05))
    await asyncio.sleep(0.01)
    paused = asyncio.create_task(pause())
    await asyncio.sleep(0.01)
    late = asyncio.create_task(batch("b", 0))
    await asyncio.gather(first, paused, late)
    assert log == ["a start", "a end", "pause", "resume", "b start", "b end"]


def test_run_cache_serves_fresh_documents_only_and_forgets_on_request() -> None:
    cache = RunCache(ttl_s=0.05)
    cache.put({"r1": {"experiment_id": "1"}, "r2": {"experiment_id": "2"}})
    assert set(cache.fresh({"r1", "r2", "r3"})) == {"r1", "r2"}
    cache.forget_experiment("1")
    assert set(cache.fresh({"r1", "r2"})) == {"r2"}
    time.sleep(0.06)
    assert cache.fresh({"r2"}) == {}
    assert RunCache(ttl_s=0).fresh({"r2"}) == {}


def test_run_cache_is_bounded() -> None:
    cache = RunCache(ttl_s=10, max_entries=3)
    for i in range(5):
        cache.put({f"r{i}": {}})
    assert len(cache) == 3 and set(cache.fresh({f"r{i}" for i in range(5)})) == {"r2", "r3", "r4"}


async def test_a_configured_wait_lets_more_events_join_the_batch() -> None:
    s = Scheduler(max_events=100, max_points=10_000, max_wait_s=0.05)
    s.put(FakeDelivery(0, 0))
    forming = asyncio.create_task(s.next_batch())
    await asyncio.sleep(0.01)
    s.put(FakeDelivery(1, 0))
    batch, taken = await asyncio.wait_for(forming, 1)
    assert taken == {0, 1} and sorted(ids(batch)) == ["p0-0", "p1-0"]
