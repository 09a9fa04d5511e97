"""Turn a batch of events into MongoDB writes. Pure: no I/O, so every rule is unit-testable.

`plan_batch(envelopes, state, bucket_size)` replays the events in order against the state the
store loaded (run and experiment documents, open metric buckets), decides each event's outcome
(committed, or rejected with an MLflow error) and returns one write per touched document:

* one update per run (all params, tags, latest metrics and lifecycle changes of the batch merged),
* one `$push` per stored metric bucket that receives points, one insert per bucket the batch opens
  (an event with many points of a key opens a new one: see `SEAL_AT`),
* experiment writes one by one (they are rare and carry the unique-name check).

Applying a plan is idempotent, which is what makes redelivery harmless: values are assignments,
params must keep their value, and metric points equal to a stored point (same step, timestamp
and value) are dropped, exactly as MLflow drops exact duplicates.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from common import events as ev
from common import validation as v
from common.documents import new_experiment_document, new_logged_model_document, new_run_document
from common.errors import INVALID_STATE, RESOURCE_ALREADY_EXISTS, MlflowError
from common.keys import encode_key
from common.mongo import ARTIFACTS, EXPERIMENTS, LOGGED_MODELS, METRICS, RUNS
from writer.registry_plan import RegistryPlanner, RegistryState
from writer.traces_plan import TracePlanner, TraceState
from writer.writes import Write

__all__ = ["BatchState", "OpenBucket", "Plan", "Write", "plan_batch", "point_key"]

RUN_NAME_TAG = "mlflow.runName"
WRITE_TOKENS_KEPT = 16  # per bucket: the last batches whose push it holds
# An event bringing at least this many points of one key to a stored, partly filled bucket starts
# a new bucket (a plain insert) instead of appending to the stored one: appending to a stored array
# makes the server rewrite the whole document, 4-5x the cost of inserting the points (10 keys x 100
# points: 8.5 ms as pushes, 1.7-2.2 ms as inserts on secantusd-rs). Buckets stay at least this big.
SEAL_AT = 64

Point = list[Any]  # [step, timestamp, value-or-None-for-NaN] (+ {extras} when the metric had them)
PointKey = tuple[int, int, float | None]


@dataclass
class OpenBucket:
    """What the store knows about a (run, key) history: its newest bucket and nearby points."""

    seq: int = 0
    count: int = 0  # points already in bucket `seq`
    seen: set[PointKey] = field(default_factory=set)  # points that would be exact duplicates
    closed_t_max: int = -1  # no point in buckets before `seq` is newer than this
    open_t_max: int = -1  # nor any point in bucket `seq`
    # No point is older than any point of an earlier bucket: bucket order is time order, so a
    # history can be read bucket by bucket (query/history.py). Unknown for histories stored before
    # the flag existed: False.
    ordered: bool = False


@dataclass
class BatchState:
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiment_names: dict[str, str] = field(default_factory=dict)  # name -> id, for the names in the batch
    buckets: dict[tuple[str, str], OpenBucket] = field(default_factory=dict)  # (run_id, encoded key)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    registry: RegistryState = field(default_factory=RegistryState)
    traces: TraceState = field(default_factory=TraceState)


@dataclass
class Plan:
    writes: list[Write]
    outcomes: dict[str, MlflowError | None]
    points_written: int = 0
    points_dropped: int = 0
    assigned: dict[str, int] = field(default_factory=dict)  # event id -> what the writer assigned
    run_docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # run documents as the plan leaves them
    spans_written: int = 0
    spans_dropped: int = 0  # already stored, or twice in the batch


@dataclass
class _DocWork:
    """A run or logged-model document being changed by the batch: the working copy plus the
    field-level changes that become its single update."""

    doc: dict[str, Any]
    existed: bool
    sets: dict[str, Any] = field(default_factory=dict)
    unsets: set[str] = field(default_factory=set)
    pushes: dict[str, list[Any]] = field(default_factory=dict)

    def set(self, path: str, value: Any) -> None:
        self.sets[path] = value
        self.unsets.discard(path)

    def unset(self, path: str) -> None:
        self.sets.pop(path, None)
        self.unsets.add(path)

    def push(self, path: str, value: Any) -> None:
        self.pushes.setdefault(path, []).append(value)

    def write(self, collection: str, key: dict[str, Any]) -> Write | None:
        if not self.existed:
            return Write(collection, key, replacement=self.doc)
        update: dict[str, Any] = {}
        if self.sets:
            update["$set"] = self.sets
        if self.unsets:
            update["$unset"] = {p: "" for p in self.unsets}
        if self.pushes:
            update["$push"] = {p: {"$each": items} for p, items in self.pushes.items()}
        return Write(collection, key, update=update) if update else None


@dataclass
class _BucketWork:
    seq: int
    count: int
    seen: set[PointKey]
    closed_t_max: int
    open_t_max: int
    first_seq: int = 0  # the open bucket when the batch started (it may exist already)
    pending: dict[int, list[Point]] = field(default_factory=dict)
    ordered: bool = False


def point_key(p: Point) -> PointKey:
    return (p[0], p[1], p[2])


def to_point(m: ev.Metric) -> tuple[Point, float, bool]:
    stored, is_nan = v.normalize_metric_value(m.value)
    point: Point = [int(m.step), int(m.timestamp), None if is_nan else stored]
    extras = {k: val for k, val in (("model_id", m.model_id), ("dataset_name", m.dataset_name),
                                     ("dataset_digest", m.dataset_digest)) if val}
    if extras:
        point.append(extras)
    return point, stored, is_nan


def _newer(a: tuple[int, int, float], b: tuple[int, int, float]) -> bool:
    return a > b


class _Planner:
    def __init__(self, state: BatchState, bucket_size: int, write_token: str | None = None):
        self.state = state
        self.bucket_size = bucket_size
        self.write_token = write_token
        self.runs: dict[str, _DocWork] = {}
        self.models: dict[str, _DocWork] = {}
        self.buckets: dict[tuple[str, str], _BucketWork] = {}
        self.experiment_writes: list[Write] = []
        self.artifact_writes: list[Write] = []
        self.registry = RegistryPlanner(state.registry)
        self.traces = TracePlanner(state.traces)
        self.experiments = {k: copy.deepcopy(d) for k, d in state.experiments.items()}
        self.names = dict(state.experiment_names)
        self.points_written = 0
        self.points_dropped = 0

    # --- lookups ---------------------------------------------------------------------------

    def run(self, run_id: str, *, active: bool = True) -> _DocWork:
        work = self.runs.get(run_id)
        if work is None:
            doc = self.state.runs.get(run_id)
            if doc is None:
                raise MlflowError.not_found(v.run_not_found_message(run_id))
            work = _DocWork(doc=copy.deepcopy(doc), existed=True)
            self.runs[run_id] = work
        if active and work.doc.get("lifecycle_stage") != "active":
            raise MlflowError.invalid(v.run_not_active_message(run_id, work.doc.get("lifecycle_stage", "deleted")))
        return work

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        doc = self.experiments.get(experiment_id)
        if doc is None:
            raise MlflowError.not_found(v.experiment_not_found_message(experiment_id))
        return doc

    def active_experiment(self, experiment_id: str) -> dict[str, Any]:
        doc = self.experiment(experiment_id)
        if doc.get("lifecycle_stage") != "active":
            raise MlflowError.invalid(v.experiment_not_active_message(experiment_id, doc.get("lifecycle_stage")))
        return doc

    def model(self, model_id: str) -> _DocWork:
        work = self.models.get(model_id)
        if work is None:
            doc = self.state.models.get(model_id)
            if doc is None:
                raise MlflowError.not_found(f"Logged model with ID '{model_id}' not found.")
            work = _DocWork(doc=copy.deepcopy(doc), existed=True)
            self.models[model_id] = work
        return work

    # --- experiments -----------------------------------------------------------------------

    def _exp_write(self, eid: str, event_id: str, update: dict[str, Any], name: str | None = None) -> None:
        self.experiment_writes.append(Write(EXPERIMENTS, {"_id": eid}, update=update, event_id=event_id,
                                            on_duplicate=_experiment_exists(name) if name else None))

    def apply_experiment(self, e: ev.ExperimentEvent, event_id: str) -> None:
        if isinstance(e, ev.ExperimentCreated):
            if e.experiment_id in self.experiments:
                return  # redelivery of an applied create
            owner = self.names.get(e.name)
            if owner is not None and owner != e.experiment_id:
                raise MlflowError(f"Experiment(name={e.name}) already exists.", RESOURCE_ALREADY_EXISTS)
            doc = new_experiment_document(
                experiment_id=e.experiment_id, name=e.name, artifact_location=e.artifact_location,
                creation_time=e.creation_time, tags=[(t.key, t.value) for t in e.tags],
            )
            if e.last_update_time is not None:
                doc["last_update_time"] = e.last_update_time
            self.experiments[e.experiment_id] = doc
            self.names[e.name] = e.experiment_id
            self.experiment_writes.append(Write(EXPERIMENTS, {"_id": e.experiment_id}, replacement=doc, event_id=event_id,
                                                on_duplicate=_experiment_exists(e.name)))
        elif isinstance(e, ev.ExperimentRenamed):
            doc = self.experiment(e.experiment_id)
            if doc.get("lifecycle_stage") != "active":
                raise MlflowError("Cannot rename a non-active experiment.", INVALID_STATE)
            owner = self.names.get(e.new_name)
            if owner is not None and owner != e.experiment_id:
                raise MlflowError(f"Experiment(name={e.new_name}) already exists.", RESOURCE_ALREADY_EXISTS)
            self.names.pop(doc["name"], None)
            doc["name"] = e.new_name
            self.names[e.new_name] = e.experiment_id
            self._exp_write(e.experiment_id, event_id, {"$set": {"name": e.new_name, "last_update_time": e.time}},
                            name=e.new_name)
        elif isinstance(e, (ev.ExperimentDeleted, ev.ExperimentRestored)):
            doc = self.experiment(e.experiment_id)
            deleting = isinstance(e, ev.ExperimentDeleted)
            # MLflow looks the experiment up among active (delete) or deleted (restore) ones.
            if doc.get("lifecycle_stage") != ("active" if deleting else "deleted"):
                raise MlflowError.not_found(v.experiment_not_found_message(e.experiment_id))
            stage = "deleted" if deleting else "active"
            doc["lifecycle_stage"] = stage
            self._exp_write(e.experiment_id, event_id, {"$set": {"lifecycle_stage": stage, "last_update_time": e.time}})
            # MLflow deletes and restores an experiment's runs with it.
            run_set = {"lifecycle_stage": stage, "deleted_time": e.time if deleting else None}
            self.experiment_writes.append(
                Write(RUNS, {"experiment_id": e.experiment_id}, update={"$set": run_set}, many=True, event_id=event_id)
            )
        elif isinstance(e, ev.ExperimentTagSet):
            doc = self.active_experiment(e.experiment_id)
            doc.setdefault("tags", {})[encode_key(e.key)] = e.value
            self._exp_write(e.experiment_id, event_id, {"$set": {f"tags.{encode_key(e.key)}": e.value}})
        elif isinstance(e, ev.ExperimentTagDeleted):
            doc = self.active_experiment(e.experiment_id)
            enc = encode_key(e.key)
            if enc not in (doc.get("tags") or {}):
                raise MlflowError.not_found(f"No tag with name: {e.key} in experiment with id {e.experiment_id}")
            del doc["tags"][enc]
            self._exp_write(e.experiment_id, event_id, {"$unset": {f"tags.{enc}": ""}})

    # --- logged models ---------------------------------------------------------------------

    def apply_model(self, e: ev.ModelEvent) -> None:
        if isinstance(e, ev.LoggedModelCreated):
            if e.model_id in self.models or e.model_id in self.state.models:
                return  # redelivery of an applied create
            self.active_experiment(e.experiment_id)
            doc = new_logged_model_document(
                model_id=e.model_id, experiment_id=e.experiment_id, name=e.name,
                artifact_location=e.artifact_location, creation_timestamp_ms=e.creation_timestamp_ms,
                model_type=e.model_type, source_run_id=e.source_run_id,
                tags=[(t.key, t.value) for t in e.tags], params=[(p.key, p.value) for p in e.params])
            self.models[e.model_id] = _DocWork(doc=doc, existed=False)
            return
        work = self.model(e.model_id)
        if isinstance(e, ev.LoggedModelFinalized):
            for path, value in (("status", e.status), ("last_updated_timestamp_ms", e.time)):
                work.doc[path] = value
                work.set(path, value)
        elif isinstance(e, ev.LoggedModelTagsSet):
            for t in e.tags:
                enc = encode_key(t.key)
                work.doc.setdefault("tags", {})[enc] = t.value
                work.set(f"tags.{enc}", t.value)
        elif isinstance(e, ev.LoggedModelTagDeleted):
            enc = encode_key(e.key)
            if enc not in (work.doc.get("tags") or {}):
                raise MlflowError.not_found(f"No tag with key {e.key!r} found for model with ID {e.model_id!r}.")
            del work.doc["tags"][enc]
            work.unset(f"tags.{enc}")
        elif isinstance(e, ev.LoggedModelParamsLogged):
            for p in e.params:
                enc = encode_key(p.key)
                work.doc.setdefault("params", {})[enc] = p.value
                work.set(f"params.{enc}", p.value)
        elif isinstance(e, ev.LoggedModelDeleted):
            for path, value in (("lifecycle_stage", "deleted"), ("last_updated_timestamp_ms", e.time)):
                work.doc[path] = value
                work.set(path, value)

    def _link_model_metric(self, run_id: str, m: ev.Metric, stored: float, is_nan: bool) -> None:
        """A metric logged with a model_id also belongs to that model (MLflow 3)."""
        try:
            work = self.model(m.model_id or "")
        except MlflowError:
            return  # MLflow links only to models that exist
        entry = {"key": m.key, "value": stored, "timestamp": m.timestamp, "step": m.step, "nan": is_nan,
                 "run_id": run_id, "model_id": m.model_id, "dataset_name": m.dataset_name,
                 "dataset_digest": m.dataset_digest}
        entries = work.doc.setdefault("metrics", [])
        if entry in entries:
            return
        entries.append(entry)
        if work.existed:
            work.push("metrics", entry)

    # --- artifact metadata -------------------------------------------------------------------

    def apply_artifact(self, e: ev.ArtifactEvent) -> None:
        """Upserts by path: replaying them is harmless, and the bytes are already stored."""
        if isinstance(e, ev.ArtifactStored):
            doc = {k: val for k, val in (("size", e.size), ("sha256", e.sha256), ("experiment_id", e.experiment_id),
                                         ("run_id", e.run_id), ("model_id", e.model_id), ("updated", e.time))
                   if val is not None}
            self.artifact_writes.append(Write(ARTIFACTS, {"_id": e.path}, replacement={"_id": e.path, **doc}))
        else:
            prefix = "^" + re.escape(e.path.rstrip("/") + "/")
            self.artifact_writes.append(Write(
                ARTIFACTS, {"$or": [{"_id": e.path}, {"_id": {"$regex": prefix}}]}, delete=True, many=True))

    # --- runs ------------------------------------------------------------------------------

    def apply_run(self, e: ev.RunEvent) -> None:
        if isinstance(e, ev.RunCreated):
            if e.run_id in self.runs or e.run_id in self.state.runs:
                return  # redelivery of an applied create
            self.active_experiment(e.experiment_id)
            doc = new_run_document(
                run_id=e.run_id, experiment_id=e.experiment_id, user_id=e.user_id, run_name=e.run_name,
                start_time=e.start_time, artifact_uri=e.artifact_uri, tags=[(t.key, t.value) for t in e.tags],
            )
            self.runs[e.run_id] = _DocWork(doc=doc, existed=False)
        elif isinstance(e, ev.RunDataLogged):
            self.log_data(e)
        elif isinstance(e, ev.RunUpdated):
            work = self.run(e.run_id)
            if e.status is not None:
                work.doc["status"] = e.status
                work.set("status", e.status)
            if e.end_time is not None:
                work.doc["end_time"] = e.end_time
                work.set("end_time", e.end_time)
            if e.run_name:
                self._set_run_name(work, e.run_name)
        elif isinstance(e, (ev.RunDeleted, ev.RunRestored)):
            work = self.run(e.run_id, active=False)
            deleting = isinstance(e, ev.RunDeleted)
            work.doc["lifecycle_stage"] = "deleted" if deleting else "active"
            work.set("lifecycle_stage", work.doc["lifecycle_stage"])
            work.doc["deleted_time"] = e.time if deleting else None
            work.set("deleted_time", work.doc["deleted_time"])
        elif isinstance(e, ev.RunTagDeleted):
            work = self.run(e.run_id)
            enc = encode_key(e.key)
            tags = work.doc.setdefault("tags", {})
            if enc not in tags:
                raise MlflowError.not_found(f"No tag with name: {e.key} in run with id {e.run_id}")
            del tags[enc]
            work.unset(f"tags.{enc}")
        elif isinstance(e, ev.RunInputsLogged):
            work = self.run(e.run_id)
            self._log_inputs(work, e)
        elif isinstance(e, ev.RunOutputsLogged):
            work = self.run(e.run_id)
            outputs = work.doc.setdefault("model_outputs", [])
            for m in e.models:
                entry = {"model_id": m.model_id, "step": m.step or 0}
                if entry not in outputs:
                    outputs.append(entry)
            work.set("model_outputs", outputs)

    def _set_run_name(self, work: _DocWork, name: str) -> None:
        work.doc["run_name"] = name
        work.set("run_name", name)
        enc = encode_key(RUN_NAME_TAG)
        work.doc.setdefault("tags", {})[enc] = name
        work.set(f"tags.{enc}", name)

    def _log_inputs(self, work: _DocWork, e: ev.RunInputsLogged) -> None:
        if e.datasets:
            datasets = work.doc.setdefault("dataset_inputs", [])
            known = {(d["dataset"]["name"], d["dataset"]["digest"]) for d in datasets}
            for di in e.datasets:
                ident = (di.dataset.name, di.dataset.digest)
                if ident in known:
                    continue
                known.add(ident)
                entry: dict[str, Any] = {"dataset": {k: val for k, val in (
                    ("name", di.dataset.name), ("digest", di.dataset.digest),
                    ("source_type", di.dataset.source_type), ("source", di.dataset.source),
                    ("schema", di.dataset.schema), ("profile", di.dataset.profile)) if val is not None}}
                if di.tags:
                    entry["tags"] = [{"key": t.key, "value": t.value} for t in di.tags]
                datasets.append(entry)
            work.set("dataset_inputs", datasets)
        if e.models:
            models = work.doc.setdefault("model_inputs", [])
            for m in e.models:
                entry = {"model_id": m.model_id}
                if entry not in models:
                    models.append(entry)
            work.set("model_inputs", models)

    def log_data(self, e: ev.RunDataLogged) -> None:
        work = self.run(e.run_id)
        params = work.doc.setdefault("params", {})
        conflicts = []
        for p in e.params:
            old = params.get(encode_key(p.key))
            if old is not None and old != p.value:
                conflicts.append({"key": p.key, "old_value": old, "new_value": p.value})
        if conflicts:
            raise MlflowError.invalid(v.param_conflict_message(e.run_id, conflicts, single=False))
        # validated: from here on the event applies as a whole
        for p in e.params:
            enc = encode_key(p.key)
            if enc not in params:
                params[enc] = p.value
                work.set(f"params.{enc}", p.value)
        for t in e.tags:
            if t.key == RUN_NAME_TAG:
                self._set_run_name(work, t.value)
            else:
                enc = encode_key(t.key)
                work.doc.setdefault("tags", {})[enc] = t.value
                work.set(f"tags.{enc}", t.value)
        if e.metrics:
            self._log_metrics(work, e.run_id, e.metrics)

    def _bucket(self, run_id: str, enc: str) -> _BucketWork:
        key = (run_id, enc)
        work = self.buckets.get(key)
        if work is None:
            known = self.state.buckets.get(key) or OpenBucket()
            work = _BucketWork(seq=known.seq, count=known.count, seen=set(known.seen),
                               closed_t_max=known.closed_t_max, open_t_max=known.open_t_max, first_seq=known.seq,
                               ordered=known.ordered)
            self.buckets[key] = work
        return work

    def _log_metrics(self, work: _DocWork, run_id: str, metrics: list[ev.Metric]) -> None:
        latest = work.doc.setdefault("metrics", {})
        per_key: dict[str, int] = {}
        for m in metrics:
            per_key[m.key] = per_key.get(m.key, 0) + 1
        for m in metrics:
            enc = encode_key(m.key)
            point, stored, is_nan = to_point(m)
            if m.model_id:
                self._link_model_metric(run_id, m, stored, is_nan)
            bucket = self._bucket(run_id, enc)
            pk = point_key(point)
            if pk in bucket.seen:
                self.points_dropped += 1
                continue
            bucket.seen.add(pk)
            if bucket.count >= self.bucket_size or (
                    per_key[m.key] >= SEAL_AT and bucket.seq == bucket.first_seq and bucket.count > 0
                    and not bucket.pending):  # the stored bucket, nothing appended to it yet
                # Time bounds decide when the store must read stored points to find duplicates
                # of late-arriving ones (a duplicate has the same timestamp).
                bucket.closed_t_max = max(bucket.closed_t_max, bucket.open_t_max)
                bucket.open_t_max = -1
                bucket.seq += 1
                bucket.count = 0
            if point[1] < bucket.closed_t_max:
                bucket.ordered = False  # older than a point of an earlier bucket
            bucket.pending.setdefault(bucket.seq, []).append(point)
            bucket.count += 1
            bucket.open_t_max = max(bucket.open_t_max, point[1])
            self.points_written += 1
            current = latest.get(enc)
            candidate = (point[0], point[1], stored)
            if current is None or _newer(candidate, (current["s"], current["t"], current["v"])):
                entry = {"v": stored, "t": point[1], "s": point[0], "nan": is_nan}
                latest[enc] = entry
                work.set(f"metrics.{enc}", entry)

    # --- output ----------------------------------------------------------------------------

    def writes(self) -> list[Write]:
        out: list[Write] = [*self.experiment_writes, *self.registry.writes, *self.artifact_writes]
        for (run_id, enc), bucket in self.buckets.items():
            for seq, points in bucket.pending.items():
                steps = [p[0] for p in points]
                times = [p[1] for p in points]
                bucket_id = {"_id": f"{run_id}:{enc}:{seq}", "run_id": run_id}
                if seq > bucket.first_seq:
                    # A bucket this batch opened: nothing is stored under its id (the store read
                    # every bucket past the recorded one when in doubt), so a plain insert does.
                    out.append(Write(METRICS, bucket_id, replacement={
                        **bucket_id, "key": enc, "seq": seq, "p": points, "n": len(points),
                        "t0": min(times), "s0": min(steps), "t1": max(times), "s1": max(steps)}, insert=True))
                    continue
                push: dict[str, Any] = {"p": {"$each": points}}
                match = bucket_id
                if self.write_token is not None:
                    # A push MongoDB applies late (a write a frozen server still held when the
                    # writer gave up on it and retried) must not add the points twice: the bucket
                    # remembers the batches it took, and a second push of one batch matches
                    # nothing (its upsert then hits the _id: `already_applied_if_duplicate`).
                    match = {**bucket_id, "w": {"$ne": self.write_token}}
                    push["w"] = {"$each": [self.write_token], "$slice": -WRITE_TOKENS_KEPT}
                out.append(Write(METRICS, match, update={
                    "$setOnInsert": {"key": enc, "seq": seq},
                    "$push": push,
                    "$inc": {"n": len(points)},
                    "$min": {"t0": min(times), "s0": min(steps)},
                    "$max": {"t1": max(times), "s1": max(steps)},
                }, already_applied_if_duplicate=self.write_token is not None))
            run = self.runs.get(run_id)
            if run is not None:
                mb = {"seq": bucket.seq, "n": bucket.count, "tc": bucket.closed_t_max, "to": bucket.open_t_max,
                      "o": bucket.ordered}
                run.doc.setdefault("mb", {})[enc] = mb
                if run.existed:
                    run.set(f"mb.{enc}", mb)
        for run_id, run in self.runs.items():
            write = run.write(RUNS, {"_id": run_id, "experiment_id": run.doc["experiment_id"]})
            if write is not None:
                out.append(write)
        for model_id, model in self.models.items():
            write = model.write(LOGGED_MODELS, {"_id": model_id})
            if write is not None:
                out.append(write)
        out.extend(self.traces.writes())
        return out


def plan_batch(envelopes: list[ev.Envelope], state: BatchState, bucket_size: int,
               write_token: str | None = None) -> Plan:
    """Apply `envelopes` in order to `state`; return the writes and each event's outcome.

    An event is applied whole or not at all: every check runs before it changes the state.
    `write_token` names the batch (the same for every attempt at it): see the bucket pushes.
    """
    planner = _Planner(state, bucket_size, write_token)
    outcomes: dict[str, MlflowError | None] = {}
    for env in envelopes:
        event = env.event
        try:
            if isinstance(event, ev.EXPERIMENT_EVENTS):
                planner.apply_experiment(event, env.id)  # type: ignore[arg-type]
            elif isinstance(event, ev.MODEL_EVENTS):
                planner.apply_model(event)  # type: ignore[arg-type]
            elif isinstance(event, ev.ARTIFACT_EVENTS):
                planner.apply_artifact(event)  # type: ignore[arg-type]
            elif isinstance(event, ev.REGISTRY_EVENTS):
                planner.registry.apply(event, env.id)  # type: ignore[arg-type]
            elif isinstance(event, ev.TRACE_EVENTS):
                planner.traces.apply(event, env.id)  # type: ignore[arg-type]
            else:
                planner.apply_run(event)  # type: ignore[arg-type]
            outcomes[env.id] = None
        except MlflowError as err:
            outcomes[env.id] = err
    writes = planner.writes()
    # Bucket pushes first, so a run document never announces points that are not stored yet;
    # then experiment and registry writes (and run cascades) in event order; then one write per run.
    writes.sort(key=lambda w: 0 if w.collection == METRICS else 1 if w.event_id is not None else 2)
    return Plan(writes, outcomes, planner.points_written, planner.points_dropped, planner.registry.assigned,
                run_docs={run_id: work.doc for run_id, work in planner.runs.items()},
                spans_written=planner.traces.spans_written, spans_dropped=planner.traces.spans_dropped)


def _experiment_exists(name: str) -> str:
    return f"Experiment(name={name}) already exists."
