"""The writer's MongoDB edge: load what a batch needs, then apply the plan with bulk writes."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pymongo import DeleteMany, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

from common import events as ev
from common.errors import RESOURCE_ALREADY_EXISTS, MlflowError
from common.keys import encode_key
from common.mongo import (
    ARTIFACTS,
    EXPERIMENTS,
    LOGGED_MODELS,
    METRICS,
    MODEL_VERSIONS,
    REGISTERED_MODELS,
    RUNS,
    TRACE_SPANS,
    TRACES,
)
from writer.plan import BatchState, OpenBucket, Plan, Write, point_key
from writer.run_cache import RunCache

log = logging.getLogger(__name__)

TRANSIENT = (AutoReconnect, ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError,
             ExecutionTimeout, WriteConcernError)
_IDS_PER_QUERY = 1200


class StoreUnavailable(Exception):
    """MongoDB is unreachable or timed out: retry the batch later, acking nothing."""


class StoreRejected(Exception):
    """MongoDB refused a write for good (e.g. a document too large): isolate the poison event."""


@dataclass
class _Keys:
    run_ids: set[str] = field(default_factory=set)
    exp_ids: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    model_ids: set[str] = field(default_factory=set)
    registry_keys: set[str] = field(default_factory=set)
    registry_names: set[str] = field(default_factory=set)
    trace_ids: set[str] = field(default_factory=set)
    metric_times: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)


def _batch_keys(envelopes: list[ev.Envelope]) -> _Keys:
    keys = _Keys()
    run_ids, exp_ids, names, model_ids, metric_times = (
        keys.run_ids, keys.exp_ids, keys.names, keys.model_ids, keys.metric_times)
    for env in envelopes:
        e = env.event
        if isinstance(e, ev.ARTIFACT_EVENTS):
            continue  # metadata upserts need no prior state
        if isinstance(e, ev.TRACE_EVENTS):
            if not isinstance(e, (ev.TracesDeleted, ev.TracesLinkedToRun)):
                keys.trace_ids.add(e.trace_id)
            continue
        if isinstance(e, ev.REGISTRY_EVENTS):
            keys.registry_keys.add(e.model_key)
            keys.registry_names.add(e.name)
            if isinstance(e, ev.RegisteredModelRenamed):
                keys.registry_names.add(e.new_name)
            continue
        if isinstance(e, ev.MODEL_EVENTS):
            model_ids.add(e.model_id)
            if isinstance(e, ev.LoggedModelCreated):
                exp_ids.add(e.experiment_id)
            continue
        if isinstance(e, ev.EXPERIMENT_EVENTS):
            exp_ids.add(e.experiment_id)
            if isinstance(e, ev.ExperimentCreated):
                names.add(e.name)
            elif isinstance(e, ev.ExperimentRenamed):
                names.add(e.new_name)
            continue
        run_ids.add(e.run_id)
        if isinstance(e, ev.RunCreated):
            exp_ids.add(e.experiment_id)
        elif isinstance(e, ev.RunDataLogged):
            for m in e.metrics:
                if m.model_id:
                    model_ids.add(m.model_id)
                k = (e.run_id, encode_key(m.key))
                lo, hi = metric_times.get(k, (m.timestamp, m.timestamp))
                metric_times[k] = (min(lo, m.timestamp), max(hi, m.timestamp))
    return keys


async def load_state(db: AsyncDatabase, envelopes: list[ev.Envelope], *, conservative: bool = False,
                     cached_runs: RunCache | None = None) -> BatchState:
    """Everything `plan_batch` needs: a handful of indexed queries per batch, whatever its size.
    Run documents come from `cached_runs` when it has them fresh (not when `conservative`)."""
    keys = _batch_keys(envelopes)
    run_ids, exp_ids, names, metric_times = keys.run_ids, keys.exp_ids, keys.names, keys.metric_times
    state = BatchState()
    try:
        if keys.model_ids:
            async for doc in db[LOGGED_MODELS].find({"_id": {"$in": list(keys.model_ids)}}):
                state.models[doc["_id"]] = doc
        if cached_runs is not None and not conservative:
            state.runs.update(cached_runs.fresh(run_ids))
        if missing := run_ids - state.runs.keys():
            async for doc in db[RUNS].find({"_id": {"$in": list(missing)}}):
                state.runs[doc["_id"]] = doc
        for query in ({"_id": {"$in": list(exp_ids)}}, {"name": {"$in": list(names)}}):
            if next(iter(query.values()))["$in"]:
                async for doc in db[EXPERIMENTS].find(query):
                    state.experiments[doc["_id"]] = doc
                    state.experiment_names[doc["name"]] = doc["_id"]
        if metric_times:
            await _load_buckets(db, state, metric_times, conservative)
        if keys.registry_keys:
            await _load_registry(db, state, keys)
        if keys.trace_ids:
            async for doc in db[TRACES].find({"_id": {"$in": list(keys.trace_ids)}}):
                state.traces.traces[doc["_id"]] = doc
            # the span ids stored so far (in the buckets: a trace document stays small however
            # many spans its trace has), for the traces that have spans
            with_spans = [t for t, d in state.traces.traces.items() if (d.get("sp") or {}).get("n")]
            if with_spans:
                async for bucket in db[TRACE_SPANS].find({"trace_id": {"$in": with_spans}}, {"trace_id": 1, "ids": 1}):
                    state.traces.span_ids.setdefault(bucket["trace_id"], set()).update(bucket.get("ids") or ())
    except TRANSIENT as exc:
        raise StoreUnavailable(str(exc)) from exc
    return state


async def _load_registry(db: AsyncDatabase, state: BatchState, keys: _Keys) -> None:
    """The registered models the batch addresses (by key, and by name for uniqueness) and all
    their versions: numbering, archiving and alias checks need them (a model has few)."""
    registry = state.registry
    for query in ({"_id": {"$in": list(keys.registry_keys)}}, {"name": {"$in": list(keys.registry_names)}}):
        async for doc in db[REGISTERED_MODELS].find(query):
            registry.names[doc["name"]] = doc["_id"]
            if doc["_id"] in keys.registry_keys:
                registry.models[doc["_id"]] = doc
    async for doc in db[MODEL_VERSIONS].find({"rm": {"$in": list(keys.registry_keys)}}):
        registry.versions.setdefault(doc["rm"], {})[doc["version"]] = doc


# Open-bucket candidates fetched by id; more than this many buckets past the recorded one only
# happens when a crashed writer left a very large batch half-recorded (then: a range query).
_LOOKAHEAD = 3


async def _load_buckets(db: AsyncDatabase, state: BatchState,
                        metric_times: dict[tuple[str, str], tuple[int, int]], conservative: bool) -> None:
    """What duplicate detection needs to know of the stored history of every (run, key).

    A duplicate has the timestamp of a stored point, so when every incoming point is newer than
    the run's bookkeeping says any stored point is (a training loop logging as it goes), nothing
    is read at all. Otherwise: the open bucket by id (one indexed query, no `$or`: planners may
    not use indexes under `$or`, SecantusDB's scans the collection), plus older buckets whose
    time range overlaps. `conservative` (redelivered events, a retried batch) distrusts the
    bookkeeping, which a crash may have left behind the stored buckets.
    """
    ids: list[str] = []
    run_ids: set[str] = set()
    late: list[tuple[str, str, int, int, int]] = []
    for (run_id, enc), (t_lo, t_hi) in metric_times.items():
        mb = ((state.runs.get(run_id) or {}).get("mb") or {}).get(enc) or {}
        seq = int(mb.get("seq", 0))
        stored_t_max = max(int(mb.get("tc", -1)), int(mb.get("to", 2**62)))
        state.buckets[(run_id, enc)] = OpenBucket(seq=seq, count=int(mb.get("n", 0)), closed_t_max=int(mb.get("tc", -1)),
                                                  open_t_max=int(mb.get("to", -1)),
                                                  ordered=bool(mb.get("o")) if mb else True)
        if mb and not conservative and t_lo > stored_t_max:
            continue
        # The open bucket (and any a crashed writer left after it) holds the recent points ...
        ids.extend(f"{run_id}:{enc}:{s}" for s in range(seq, seq + _LOOKAHEAD))
        run_ids.add(run_id)
        # ... older buckets matter only for points as old as theirs (late or replayed data).
        if seq > 0 and t_lo <= int(mb.get("tc", 2**62)):
            late.append((run_id, enc, seq, t_lo, t_hi))
    projection = {"run_id": 1, "key": 1, "seq": 1, "n": 1, "p": 1}
    found: list[dict[str, Any]] = []
    for i in range(0, len(ids), _IDS_PER_QUERY):
        query = {"run_id": {"$in": list(run_ids)}, "_id": {"$in": ids[i:i + _IDS_PER_QUERY]}}
        found.extend(await db[METRICS].find(query, projection).to_list(None))
    for doc in found:
        bucket = state.buckets[(doc["run_id"], doc["key"])]
        if doc["seq"] == bucket.seq + _LOOKAHEAD - 1:  # rare: even more may follow
            found.extend(await db[METRICS].find(
                {"run_id": doc["run_id"], "key": doc["key"], "seq": {"$gt": doc["seq"]}}, projection).to_list(None))
    for run_id, enc, seq, t_lo, t_hi in late:
        found.extend(await db[METRICS].find(
            {"run_id": run_id, "key": enc, "seq": {"$lt": seq}, "t1": {"$gte": t_lo}, "t0": {"$lte": t_hi}},
            projection).to_list(None))
    recorded = {key: b.seq for key, b in state.buckets.items()}
    for doc in found:
        key = (doc["run_id"], doc["key"])
        bucket = state.buckets[key]
        bucket.seen.update(point_key(p) for p in doc.get("p", ()))
        if doc["seq"] > recorded[key]:
            # a crashed writer stored this bucket but not the run's bookkeeping
            bucket.closed_t_max = max(bucket.closed_t_max, max((p[1] for p in doc.get("p", ())), default=-1))
        if doc["seq"] >= bucket.seq:
            if doc["seq"] > bucket.seq:
                bucket.open_t_max = -1
            bucket.seq = doc["seq"]
            bucket.count = int(doc.get("n", 0))
            bucket.open_t_max = max(bucket.open_t_max, max((p[1] for p in doc.get("p", ())), default=-1))


def _to_op(w: Write) -> UpdateOne | ReplaceOne | UpdateMany | DeleteMany | InsertOne:
    if w.delete:
        return DeleteMany(w.filter)
    if w.insert:
        return InsertOne(w.replacement)
    if w.replacement is not None:
        return ReplaceOne(w.filter, w.replacement, upsert=True)
    if w.many:
        return UpdateMany(w.filter, w.update)
    return UpdateOne(w.filter, w.update, upsert=w.upsert or w.collection == METRICS)


async def apply_plan(db: AsyncDatabase, plan: Plan) -> None:
    """Execute the writes in plan order; unique-name conflicts become that event's outcome."""
    groups: dict[str, list[Write]] = defaultdict(list)
    sequence: list[str] = []
    for w in plan.writes:
        group = "event" if w.event_id is not None else w.collection
        if group not in groups:
            sequence.append(group)
        groups[group].append(w)
    try:
        for group in sequence:
            writes = groups[group]
            if group == "event":
                await _apply_event_writes(db, plan, writes)
            else:
                # Artifact writes may put and delete one path in a batch: keep their order.
                try:
                    await db[group].bulk_write([_to_op(w) for w in writes], ordered=group == ARTIFACTS)
                except BulkWriteError as exc:
                    if not _all_already_applied(exc, writes):
                        raise
    except BulkWriteError as exc:
        raise StoreRejected(str(exc.details.get("writeErrors", exc))[:500]) from exc
    except TRANSIENT as exc:
        raise StoreUnavailable(str(exc)) from exc


def _all_already_applied(exc: BulkWriteError, writes: list[Write]) -> bool:
    """Every refused write was one an earlier attempt at the batch had applied already."""
    errors = (exc.details or {}).get("writeErrors") or []
    return bool(errors) and all(
        e.get("code") == 11000 and writes[e["index"]].already_applied_if_duplicate for e in errors)


async def _apply_event_writes(db: AsyncDatabase, plan: Plan, writes: list[Write]) -> None:
    """Experiment and registry writes, one at a time in event order. A unique index refusing one
    (a name taken concurrently through another partition) fails that event, and its later writes
    are skipped."""
    failed: set[str] = set()
    for w in writes:
        event_id = w.event_id or ""
        if event_id in failed:
            continue
        try:
            await db[w.collection].bulk_write([_to_op(w)])
        except (BulkWriteError, DuplicateKeyError) as exc:
            details = exc.details if isinstance(exc, BulkWriteError) else {"writeErrors": [{"code": exc.code}]}
            codes = {e.get("code") for e in (details or {}).get("writeErrors", [])}
            if 11000 not in codes or w.on_duplicate is None:
                raise
            failed.add(event_id)
            plan.outcomes[event_id] = MlflowError(w.on_duplicate, RESOURCE_ALREADY_EXISTS)
            plan.assigned.pop(event_id, None)
