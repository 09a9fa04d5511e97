"""The indexed reads ingest makes to validate writes synchronously, with a short-lived cache.

The writer re-checks everything in partition order when it commits (and, in committed mode,
its verdict is what the client hears), so this cache only has to be right almost always: it
turns the hot path (log-metric against a known run) into zero database reads. For the same
reason a snapshot past its TTL is still used while MongoDB is unreachable (stale-if-error): a
training job keeps logging to its run through a MongoDB outage, and the writer applies the
events, with the authoritative checks, once MongoDB is back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from common.keys import encode_key
from common.mongo import COUNTERS, EXPERIMENTS, LOGGED_MODELS, RUNS
from common.web import is_store_outage
from ingest.metrics import IngestMetrics

_MAX_ENTRIES = 100_000
STALE_RETRY_S = 2.0  # after MongoDB failed a read, how long stale snapshots answer without asking it


@dataclass
class RunSnapshot:
    run_id: str
    experiment_id: str
    lifecycle_stage: str
    params: dict[str, str] = field(default_factory=dict)  # encoded key -> value
    tag_keys: set[str] = field(default_factory=set)  # encoded keys


@dataclass
class ExperimentSnapshot:
    experiment_id: str
    name: str
    lifecycle_stage: str
    artifact_location: str
    tag_keys: set[str] = field(default_factory=set)


class Lookups:
    def __init__(self, db: AsyncDatabase, ttl_s: float, metrics: IngestMetrics):
        self._db = db
        self._ttl = ttl_s
        self._metrics = metrics
        self._runs: dict[str, tuple[float, RunSnapshot]] = {}
        self._experiments: dict[str, ExperimentSnapshot] = {}
        self._store_down_until = 0.0  # after a failed read, stale snapshots answer until then

    # --- runs ------------------------------------------------------------------------------

    async def run(self, run_id: str) -> RunSnapshot | None:
        hit = self._runs.get(run_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            self._metrics.lookups.labels("cache").inc()
            return hit[1]
        if hit is not None and now < self._store_down_until:
            self._metrics.lookups.labels("stale").inc()  # MongoDB just failed us: don't wait again
            return hit[1]
        self._metrics.lookups.labels("mongodb").inc()
        try:
            doc = await self._db[RUNS].find_one(
                {"_id": run_id}, {"experiment_id": 1, "lifecycle_stage": 1, "params": 1, "tags": 1})
        except Exception as exc:
            if hit is None or not is_store_outage(exc):
                raise
            self._store_down_until = time.monotonic() + STALE_RETRY_S
            self._metrics.lookups.labels("stale").inc()
            return hit[1]
        if doc is None:
            self._runs.pop(run_id, None)
            return None
        snap = RunSnapshot(run_id, doc["experiment_id"], doc.get("lifecycle_stage", "active"),
                           dict(doc.get("params") or {}), set((doc.get("tags") or {}).keys()))
        self.remember(snap)
        return snap

    def remember(self, snap: RunSnapshot) -> None:
        if len(self._runs) >= _MAX_ENTRIES:
            self._runs.clear()  # crude but bounded; entries are cheap to refetch
        self._runs[snap.run_id] = (time.monotonic(), snap)

    def forget_run(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def note_logged(self, snap: RunSnapshot, params: dict[str, str], tag_keys: list[str]) -> None:
        """After a committed write: params and tags now exist (keeps the cache exact for us)."""
        snap.params.update({encode_key(k): val for k, val in params.items()})
        snap.tag_keys.update(encode_key(k) for k in tag_keys)

    async def run_info_document(self, run_id: str) -> dict[str, Any] | None:
        return await self._db[RUNS].find_one(
            {"_id": run_id}, {"params": 0, "metrics": 0, "tags": 0, "mb": 0, "dataset_inputs": 0})

    # --- logged models -----------------------------------------------------------------------

    async def logged_model(self, model_id: str) -> dict[str, Any] | None:
        return await self._db[LOGGED_MODELS].find_one({"_id": model_id})

    # --- experiments -----------------------------------------------------------------------

    async def experiment(self, experiment_id: str) -> ExperimentSnapshot | None:
        """Always read (experiments change rarely, but their lifecycle matters); the last snapshot
        stands in while MongoDB is unreachable."""
        try:
            doc = await self._db[EXPERIMENTS].find_one(
                {"_id": experiment_id}, {"name": 1, "lifecycle_stage": 1, "artifact_location": 1, "tags": 1})
        except Exception as exc:
            last = self._experiments.get(experiment_id)
            if last is None or not is_store_outage(exc):
                raise
            return last
        if doc is None:
            self._experiments.pop(experiment_id, None)
            return None
        snap = _experiment_snapshot(doc)
        if len(self._experiments) >= _MAX_ENTRIES:
            self._experiments.clear()
        self._experiments[experiment_id] = snap
        return snap

    async def experiment_id_by_name(self, name: str) -> str | None:
        doc = await self._db[EXPERIMENTS].find_one({"name": name}, {"_id": 1})
        return None if doc is None else doc["_id"]

    async def next_experiment_id(self) -> str:
        """A short numeric id, unique across ingest replicas (one atomic counter document)."""
        doc = await self._db[COUNTERS].find_one_and_update(
            {"_id": "experiment_id"}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
        return str(doc["seq"])

    async def ping(self) -> Any:
        return await self._db.command("ping")


def _experiment_snapshot(doc: dict[str, Any]) -> ExperimentSnapshot:
    return ExperimentSnapshot(doc["_id"], doc["name"], doc.get("lifecycle_stage", "active"),
                              doc.get("artifact_location", ""), set((doc.get("tags") or {}).keys()))
