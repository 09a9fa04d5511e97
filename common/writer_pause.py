"""Pausing every writer between two batches, so that a backup reads MongoDB as of one instant.

Why a pause: a writer applies a batch as a few bulk writes, one per collection (runs, metric
buckets, artifacts ...), not as one transaction, and a dump reads one collection after another
while writers keep going. Without a pause a dump can hold half a batch (a run's latest metric
without its history point; buckets the run's bookkeeping does not know) or mix instants across
collections. A writer that crashes mid-batch heals by redelivery; a restored dump has nothing
that would redeliver. With every writer stopped between batches, the dump is the database at
one instant at which every event is either wholly applied or not at all.

The protocol lives in the MongoDB collection `control` (coordination state: backups leave it
out, like the writers' heartbeats in `writers`):

* `{_id: "writer-pause", token, holder, since, lease_until}`: the pause, in force while
  `lease_until` lies ahead. Its holder renews the lease while it works, so a backup
  that dies leaves the writers paused for at most one lease (`LEASE_S`).
* `{_id: "writer:<instance id>", kind: "writer", seen, paused, paused_at}`: one per writer,
  written by that writer: when it last looked (`seen`) and which pause it holds (`paused`: the
  token, or None while it applies batches).

Writer side (`watching`, one hook in `writer/consumer.py`): a task beside the consumer reads the
pause every `POLL_S`. When one is in force it acquires the consumer's batch lock (so it waits for
the batch being applied, then holds off the next one and any partition hand-over), records
`paused=<token>`, and keeps the lock until the pause is lifted or its lease runs out. Deliveries
keep arriving meanwhile and wait, unacknowledged, in the writer's prefetch buffer and in the
durable quorum queues; they are applied in order afterwards. Ingest keeps accepting writes: a
committed-mode write whose commit does not come within GENESIS_FLOW_COMMIT_TIMEOUT_S is
acknowledged as enqueued (durable in the queue), as during any writer outage.

Holder side (`pause_writers`): claim the pause (refused while another holder's is in force),
wait until every writer seen within `LIVE_S` reports the token, dump, then `confirm()` that the
pause held throughout: the lease never lapsed, and no writer has looked since the writers
stopped without holding the pause from before that moment (a writer that was cut off from
MongoDB, or stalled, and came back during the dump fails the backup instead of slipping in).
A writer that heartbeats for the balancer (`writers`) but keeps no pause record (a version from
before this protocol) makes the pause fail rather than be overlooked.
What no protocol without a fencing token on every MongoDB write can see: a writer frozen
mid-batch for longer than `LIVE_S` that stays frozen until after `confirm()`.

Every time here is MongoDB's clock (`$currentDate`, read back), never a process's, so the
writers' and the backup's hosts need not agree on the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from common.mongo import CONTROL

log = logging.getLogger(__name__)

PAUSE_ID = "writer-pause"
CLOCK_ID = "clock"  # scratch document: reading MongoDB's clock is a `$currentDate` write
POLL_S = 0.5  # how often a writer records that it is alive and looks for a pause
LIVE_S = 10.0  # a writer not seen for this long is stopped (or cut off from MongoDB)
LEASE_S = 60.0  # a pause its holder stopped renewing ends by itself after this
BALANCER_HEARTBEATS = "writers"  # writer/balancer.py: writers that take no part in pauses show up here


class PauseFailed(RuntimeError):
    """The writers could not be paused, or the pause did not hold: the dump is not consistent."""


def _writer_doc_id(instance_id: str) -> str:
    return f"writer:{instance_id}"


async def server_now(control: AsyncCollection) -> dt.datetime:
    doc = await control.find_one_and_update({"_id": CLOCK_ID}, {"$currentDate": {"now": True}}, upsert=True,
                                            return_document=ReturnDocument.AFTER)
    return doc["now"]


# --- writer side ------------------------------------------------------------------------------


def _in_force(pause: dict[str, Any] | None, now: dt.datetime) -> bool:
    return bool(pause) and pause.get("lease_until") is not None and pause["lease_until"] > now


class _Watcher:
    def __init__(self, db: AsyncDatabase, instance_id: str, lock: contextlib.AbstractAsyncContextManager[Any],
                 poll_s: float):
        self._control = db[CONTROL]
        self._id = _writer_doc_id(instance_id)
        self._lock = lock
        self._poll_s = poll_s
        self.first_look = asyncio.Event()

    async def _stamp(self, paused: str | None, *, ack: bool = False) -> dt.datetime:
        """Record that this writer is alive (and which pause it holds); returns MongoDB's time."""
        fields: dict[str, Any] = {"kind": "writer", "paused": paused}
        if paused is None:
            fields["paused_at"] = None
        doc = await self._control.find_one_and_update(
            {"_id": self._id}, {"$set": fields, "$currentDate": {"seen": True, **({"paused_at": True} if ack else {})}},
            projection={"seen": 1}, upsert=True, return_document=ReturnDocument.AFTER)
        return doc["seen"]

    async def _pause(self, now: dt.datetime) -> dict[str, Any] | None:
        pause = await self._control.find_one({"_id": PAUSE_ID})
        return pause if _in_force(pause, now) else None

    async def run(self) -> None:
        while True:
            try:
                pause = await self._pause(await self._stamp(None))
                if pause is not None:
                    await self._hold(pause["token"], pause.get("holder"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - MongoDB away: batches cannot be written either
                log.debug("writer pause check failed: %s", exc)
            finally:
                self.first_look.set()
            await asyncio.sleep(self._poll_s)

    async def _hold(self, token: str, holder: str | None) -> None:
        async with self._lock:  # the batch being applied ends first; no other starts until we let go
            self.first_look.set()
            log.info("writer paused for %s", holder)
            acked = False
            last_seen_in_force = time.monotonic()
            # Unreachable MongoDB: keep holding for one lease (nothing could be written anyway).
            while time.monotonic() - last_seen_in_force < LEASE_S:
                try:
                    current = await self._pause(await self._stamp(token, ack=not acked))
                    acked = True
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - keep holding; see the loop condition
                    log.debug("writer pause check failed while paused: %s", exc)
                    await asyncio.sleep(self._poll_s)
                    continue
                if current is None or current.get("token") != token:
                    break  # lifted, or its lease ran out
                last_seen_in_force = time.monotonic()
                await asyncio.sleep(self._poll_s)
        log.info("writer resumed")

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._control.delete_one({"_id": self._id}), 2)


@contextlib.asynccontextmanager
async def watching(db: AsyncDatabase, instance_id: str, batch_lock: contextlib.AbstractAsyncContextManager[Any], *,
                   poll_s: float = POLL_S) -> AsyncIterator[None]:
    """Let backups pause this writer: for the duration, a task takes `batch_lock` (the lock the
    writer holds while it applies a batch) whenever a pause is in force. Returns once the first
    look is done, so a writer started during a pause applies nothing before it holds it."""
    watcher = _Watcher(db, instance_id, batch_lock, poll_s)
    task = asyncio.create_task(watcher.run(), name="writer-pause-watch")
    try:
        await watcher.first_look.wait()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await watcher.leave()


# --- holder side ------------------------------------------------------------------------------


@dataclass
class WriterPause:
    """A pause this process holds; `writers` are the writers that stopped for it."""

    db: AsyncDatabase
    token: str
    holder: str
    lease_s: float
    requested_at: dt.datetime | None = None  # MongoDB's clock: the consistency point is after this ...
    quiesced_at: dt.datetime | None = None  # ... and before this: every writer had stopped by then
    writers: list[str] = field(default_factory=list)
    lapsed: str | None = None

    @property
    def _control(self) -> AsyncCollection:
        return self.db[CONTROL]

    def _lease(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.lease_s)

    async def _claim(self) -> None:
        now = await server_now(self._control)
        fields = {"token": self.token, "holder": self.holder, "since": now, "lease_until": self._lease(now)}
        try:
            await self._control.update_one(
                {"_id": PAUSE_ID, "$or": [{"lease_until": {"$lte": now}}, {"token": self.token}]},
                {"$set": fields}, upsert=True)
        except DuplicateKeyError:
            other = await self._control.find_one({"_id": PAUSE_ID}) or {}
            raise PauseFailed(f"the writers are already paused by {other.get('holder')!r} "
                              f"(lease until {other.get('lease_until')}); one backup at a time") from None
        self.requested_at = now

    async def _renew(self) -> None:
        """Extend the lease every quarter lease; a renewal that comes too late marks the pause lapsed."""
        assert self.requested_at is not None
        lease_until = self._lease(self.requested_at)
        while True:
            await asyncio.sleep(self.lease_s / 4)
            try:
                now = await server_now(self._control)
                result = await self._control.update_one({"_id": PAUSE_ID, "token": self.token},
                                                        {"$set": {"lease_until": self._lease(now)}})
            except Exception as exc:  # noqa: BLE001 - try again; a late renewal is recorded as lapsed
                log.warning("could not renew the writer pause: %s", exc)
                continue
            if result.matched_count == 0:
                self.lapsed = "the pause document was removed"
            elif now >= lease_until:
                self.lapsed = f"the lease ran out {(now - lease_until).total_seconds():.1f}s before it was renewed"
            lease_until = self._lease(now)

    async def _seen_since(self, collection: str, since: dt.datetime, **query: Any) -> list[dict[str, Any]]:
        return await self.db[collection].find({**query, "seen": {"$gte": since}}).to_list(None)

    async def _wait_for_writers(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            live_since = await server_now(self._control) - dt.timedelta(seconds=LIVE_S)
            live = await self._seen_since(CONTROL, live_since, kind="writer")
            waiting = sorted(d["_id"].removeprefix("writer:") for d in live if d.get("paused") != self.token)
            # A writer that heartbeats for the balancer but keeps no pause record cannot be paused.
            taking_part = {d["_id"] for d in live}
            deaf = sorted(d["_id"] for d in await self._seen_since(BALANCER_HEARTBEATS, _naive_ms(live_since))
                          if _writer_doc_id(d["_id"]) not in taking_part)
            if not waiting and not deaf:
                self.quiesced_at = await server_now(self._control)
                self.writers = sorted(d["_id"].removeprefix("writer:") for d in live)
                return
            if time.monotonic() >= deadline:
                raise PauseFailed(f"writers did not pause within {timeout_s:.0f}s: {', '.join(waiting + deaf)}"
                                  + (" (no pause record: an older writer version?)" if deaf else ""))
            await asyncio.sleep(0.1)

    async def confirm(self) -> None:
        """Raise PauseFailed unless every writer stayed stopped from `quiesced_at` until now."""
        assert self.quiesced_at is not None
        if self.lapsed:
            raise PauseFailed(f"the writer pause did not hold: {self.lapsed}")
        doc = await self._control.find_one({"_id": PAUSE_ID})
        if doc is None or doc.get("token") != self.token or not _in_force(doc, await server_now(self._control)):
            raise PauseFailed("the writer pause did not hold: it was lifted or expired during the backup")
        for w in await self._seen_since(CONTROL, self.quiesced_at, kind="writer"):
            if w.get("paused") != self.token or (w.get("paused_at") or self.quiesced_at) > self.quiesced_at:
                raise PauseFailed(f"writer {w['_id'].removeprefix('writer:')} was running during the backup "
                                  "(it came back after the writers stopped); take the backup again")

    async def release(self) -> None:
        await self._control.delete_one({"_id": PAUSE_ID, "token": self.token})


def _naive_ms(when: dt.datetime) -> int:
    """A MongoDB date (naive UTC) as epoch ms: the balancer's heartbeats are epoch ms."""
    return int(when.replace(tzinfo=dt.UTC).timestamp() * 1000)


def holder_name(purpose: str) -> str:
    return f"{purpose}@{socket.gethostname()}:{os.getpid()}"


@contextlib.asynccontextmanager
async def pause_writers(db: AsyncDatabase, holder: str, *, timeout_s: float = 60.0,
                        lease_s: float = LEASE_S) -> AsyncIterator[WriterPause]:
    """Hold every writer between batches for the duration (see the module docstring).

    Raises PauseFailed if a writer does not stop within `timeout_s`; call `confirm()` on the
    yielded pause before trusting what was read under it. The pause is lifted on exit."""
    pause = WriterPause(db, uuid.uuid4().hex, holder, lease_s)
    await pause._claim()
    renewing = asyncio.create_task(pause._renew(), name="writer-pause-lease")
    try:
        await pause._wait_for_writers(timeout_s)
        log.info("writers paused: %s", ", ".join(pause.writers) or "(none running)")
        yield pause
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        with contextlib.suppress(Exception):
            await pause.release()
