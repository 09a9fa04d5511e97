"""What each tracking write does: validate synchronously, build one event, submit it, answer.

Handlers in `ingest.routes` decode the body and call these methods; nothing here knows HTTP.
Checks follow the reference server's order so the first error reported is the same one.
"""

from __future__ import annotations

import uuid
from typing import Any

from common import documents
from common import events as ev
from common import validation as v
from common.clock import now_ms
from common.errors import RESOURCE_ALREADY_EXISTS, INVALID_STATE, MlflowError
from common.keys import encode_key
from common.settings import AckMode, Settings
from ingest import requests as rq
from ingest.bus import EventBus
from ingest.lookups import Lookups, RunSnapshot
from ingest.names import random_run_name

RUN_NAME_TAG = "mlflow.runName"
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")


def event_tags(items: list[rq.KeyValue]) -> list[ev.Tag]:
    return [ev.Tag(t.key or "", t.value or "") for t in items]


class IngestService:
    def __init__(self, settings: Settings, bus: EventBus, lookups: Lookups):
        self._settings = settings
        self._bus = bus
        self._lookups = lookups

    # --- shared checks ---------------------------------------------------------------------

    async def _active_run(self, run_id: str) -> RunSnapshot:
        v.validate_run_id(run_id)
        snap = await self._lookups.run(run_id)
        if snap is None:
            raise MlflowError.not_found(v.run_not_found_message(run_id))
        if snap.lifecycle_stage != "active":
            raise MlflowError.invalid(v.run_not_active_message(run_id, snap.lifecycle_stage))
        return snap

    async def _experiment(self, experiment_id: str, stage: str | None = None):
        v.validate_experiment_id(experiment_id)
        exp = await self._lookups.experiment(experiment_id)
        if exp is None or (stage is not None and exp.lifecycle_stage != stage):
            raise MlflowError.not_found(v.experiment_not_found_message(experiment_id))
        return exp

    def _check_experiment_name(self, name: Any) -> None:
        v.validate_experiment_name(name)
        if self._settings.strict_input_validation:
            v.validate_tag_name(name, path="name")

    async def _submit(self, event: ev.Event, ack: AckMode = "committed") -> None:
        await self._bus.submit(event, ack)

    # --- experiments -----------------------------------------------------------------------

    async def create_experiment(self, req: rq.CreateExperiment) -> dict[str, Any]:
        self._check_experiment_name(req.name)
        for t in req.tags:
            v.validate_experiment_tag(t.key, t.value)
        if req.artifact_location and req.artifact_location.startswith("runs:"):
            raise MlflowError.invalid(f"Artifact location cannot be a runs:/ URI. Given: '{req.artifact_location}'")
        if await self._lookups.experiment_id_by_name(req.name) is not None:
            raise MlflowError(f"Experiment(name={req.name}) already exists.", RESOURCE_ALREADY_EXISTS)
        experiment_id = await self._lookups.next_experiment_id()
        await self._submit(ev.ExperimentCreated(
            experiment_id=experiment_id, name=req.name,
            artifact_location=req.artifact_location or documents.experiment_artifact_location(experiment_id),
            creation_time=now_ms(), tags=event_tags(req.tags),
        ))
        return {"experiment_id": experiment_id}

    async def rename_experiment(self, req: rq.UpdateExperiment) -> dict[str, Any]:
        self._check_experiment_name(req.new_name)
        exp = await self._experiment(req.experiment_id)
        if exp.lifecycle_stage != "active":
            raise MlflowError("Cannot rename a non-active experiment.", INVALID_STATE)
        owner = await self._lookups.experiment_id_by_name(req.new_name)
        if owner is not None and owner != req.experiment_id:
            raise MlflowError(f"Experiment(name={req.new_name}) already exists.", RESOURCE_ALREADY_EXISTS)
        await self._submit(ev.ExperimentRenamed(req.experiment_id, req.new_name, now_ms()))
        return {}

    async def delete_experiment(self, req: rq.ExperimentId) -> dict[str, Any]:
        await self._experiment(req.experiment_id, stage="active")
        await self._submit(ev.ExperimentDeleted(req.experiment_id, now_ms()))
        return {}

    async def restore_experiment(self, req: rq.ExperimentId) -> dict[str, Any]:
        await self._experiment(req.experiment_id, stage="deleted")
        await self._submit(ev.ExperimentRestored(req.experiment_id, now_ms()))
        return {}

    async def set_experiment_tag(self, req: rq.SetExperimentTag) -> dict[str, Any]:
        v.validate_experiment_tag(req.key, req.value)
        exp = await self._experiment(req.experiment_id)
        if exp.lifecycle_stage != "active":
            raise MlflowError.invalid(v.experiment_not_active_message(req.experiment_id, exp.lifecycle_stage))
        await self._submit(ev.ExperimentTagSet(req.experiment_id, req.key, req.value or ""))
        return {}

    async def delete_experiment_tag(self, req: rq.DeleteExperimentTag) -> dict[str, Any]:
        exp = await self._experiment(req.experiment_id)
        if exp.lifecycle_stage != "active":
            raise MlflowError.invalid(v.experiment_not_active_message(req.experiment_id, exp.lifecycle_stage))
        if encode_key(req.key) not in exp.tag_keys:
            raise MlflowError.not_found(f"No tag with name: {req.key} in experiment with id {req.experiment_id}")
        await self._submit(ev.ExperimentTagDeleted(req.experiment_id, req.key))
        return {}

    # --- runs: lifecycle -------------------------------------------------------------------

    async def create_run(self, req: rq.CreateRun) -> dict[str, Any]:
        experiment_id = req.experiment_id or "0"
        exp = await self._experiment(experiment_id)
        if exp.lifecycle_stage != "active":
            raise MlflowError.invalid(v.experiment_not_active_message(experiment_id, exp.lifecycle_stage))
        for i, t in enumerate(req.tags):
            v.validate_tag(t.key, t.value, path=f"tags[{i}]")
        tags = event_tags(req.tags)
        tag_name = next((t.value for t in tags if t.key == RUN_NAME_TAG), None)
        if req.run_name and tag_name and req.run_name != tag_name:
            raise MlflowError.invalid(
                "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
                f"different values (run_name='{req.run_name}', mlflow.runName='{tag_name}').")
        run_name = req.run_name or tag_name or random_run_name()
        if tag_name is None:
            tags.append(ev.Tag(RUN_NAME_TAG, run_name))
        run_id = uuid.uuid4().hex
        event = ev.RunCreated(
            run_id=run_id, experiment_id=experiment_id, user_id=req.user_id or "", run_name=run_name,
            start_time=req.start_time if req.start_time is not None else now_ms(),
            artifact_uri=documents.run_artifact_uri(exp.artifact_location, run_id), tags=tags,
        )
        await self._submit(event)
        self._lookups.remember(RunSnapshot(run_id, experiment_id, "active", {}, {encode_key(t.key) for t in tags}))
        doc = documents.new_run_document(
            run_id=run_id, experiment_id=experiment_id, user_id=event.user_id, run_name=run_name,
            start_time=event.start_time, artifact_uri=event.artifact_uri, tags=[(t.key, t.value) for t in tags])
        return {"run": documents.run(doc, with_outputs=False)}

    async def update_run(self, req: rq.UpdateRun) -> dict[str, Any]:
        await self._active_run(req.id)
        if req.status is not None and req.status not in RUN_STATUSES:
            raise MlflowError.invalid(v.invalid_value("status", req.status))
        await self._submit(ev.RunUpdated(req.id, status=req.status, end_time=req.end_time, run_name=req.run_name or None))
        doc = await self._lookups.run_info_document(req.id)
        if doc is None:  # enqueued-mode deployments may not have committed yet
            raise MlflowError.not_found(v.run_not_found_message(req.id))
        return {"run_info": documents.run_info(doc)}

    async def delete_run(self, req: rq.RunRef) -> dict[str, Any]:
        await self._existing_run(req.id)
        await self._submit(ev.RunDeleted(req.id, now_ms()))
        self._lookups.forget_run(req.id)
        return {}

    async def restore_run(self, req: rq.RunRef) -> dict[str, Any]:
        await self._existing_run(req.id)
        await self._submit(ev.RunRestored(req.id, now_ms()))
        self._lookups.forget_run(req.id)
        return {}

    async def _existing_run(self, run_id: str) -> RunSnapshot:
        v.validate_run_id(run_id)
        self._lookups.forget_run(run_id)  # lifecycle changes always read fresh
        snap = await self._lookups.run(run_id)
        if snap is None:
            raise MlflowError.not_found(v.run_not_found_message(run_id))
        return snap

    # --- runs: data ------------------------------------------------------------------------

    async def log_metric(self, req: rq.LogMetric, ack: AckMode) -> dict[str, Any]:
        metric = _metric(req.key, req.value, req.timestamp, req.step, req.model_id, req.dataset_name, req.dataset_digest)
        v.validate_metric(metric.key, metric.value, metric.timestamp, metric.step)
        await self._active_run(req.id)
        await self._submit(ev.RunDataLogged(req.id, metrics=[metric]), ack)
        return {}

    async def log_param(self, req: rq.LogParam, ack: AckMode) -> dict[str, Any]:
        value = req.value or ""
        v.validate_param(req.key, value)
        snap = await self._active_run(req.id)
        _check_params(snap, [ev.Tag(req.key or "", value)], single=True)
        await self._submit(ev.RunDataLogged(req.id, params=[ev.Tag(req.key or "", value)]), ack)
        self._lookups.note_logged(snap, {req.key or "": value}, [])
        return {}

    async def set_tag(self, req: rq.SetTag, ack: AckMode) -> dict[str, Any]:
        value = req.value or ""
        v.validate_tag(req.key, value)
        snap = await self._active_run(req.id)
        await self._submit(ev.RunDataLogged(req.id, tags=[ev.Tag(req.key or "", value)]), ack)
        self._lookups.note_logged(snap, {}, [req.key or ""])
        return {}

    async def delete_tag(self, req: rq.DeleteTag) -> dict[str, Any]:
        snap = await self._active_run(req.id)
        if encode_key(req.key or "") not in snap.tag_keys:
            # the cache may be behind another replica's set-tag: confirm before refusing
            self._lookups.forget_run(req.id)
            snap = await self._active_run(req.id)
            if encode_key(req.key or "") not in snap.tag_keys:
                raise MlflowError.not_found(f"No tag with name: {req.key} in run with id {req.id}")
        await self._submit(ev.RunTagDeleted(req.id, req.key or ""))
        snap.tag_keys.discard(encode_key(req.key or ""))
        return {}

    async def log_batch(self, req: rq.LogBatch, ack: AckMode) -> dict[str, Any]:
        v.validate_run_id(req.id)
        metrics = [_metric(m.key, m.value, m.timestamp, m.step, m.model_id, m.dataset_name, m.dataset_digest)
                   for m in req.metrics]
        for i, m in enumerate(metrics):
            v.validate_metric(m.key, m.value, m.timestamp, m.step, path=f"metrics[{i}]")
        for i, p in enumerate(req.params):
            v.validate_param(p.key, p.value or "", path=f"params[{i}]")
        for i, t in enumerate(req.tags):
            v.validate_tag(t.key, t.value or "", path=f"tags[{i}]")
        v.validate_batch_limits(len(metrics), len(req.params), len(req.tags))
        v.validate_param_keys_unique(p.key or "" for p in req.params)
        snap = await self._active_run(req.id)
        params = event_tags(req.params)
        tags = event_tags(req.tags)
        _check_params(snap, params, single=False)
        if not (metrics or params or tags):
            return {}
        await self._submit(ev.RunDataLogged(req.id, metrics=metrics, params=params, tags=tags), ack)
        self._lookups.note_logged(snap, {p.key: p.value for p in params}, [t.key for t in tags])
        return {}

    async def log_inputs(self, req: rq.LogInputs) -> dict[str, Any]:
        datasets = []
        for di in req.datasets:
            d = di.dataset
            if d is None:
                raise MlflowError.invalid("Dataset cannot be None")
            v.validate_dataset(d.name, d.digest, d.source_type, d.source, d.schema, d.profile)
            for t in di.tags:
                v.validate_input_tag(t.key, t.value)
            datasets.append(ev.DatasetInput(
                ev.Dataset(d.name or "", d.digest or "", d.source_type or "", d.source or "", d.schema, d.profile),
                event_tags(di.tags)))
        await self._active_run(req.id)
        await self._submit(ev.RunInputsLogged(req.id, datasets=datasets,
                                              models=[ev.ModelRef(m.model_id) for m in req.models]))
        return {}

    async def log_outputs(self, req: rq.LogOutputs) -> dict[str, Any]:
        await self._active_run(req.id)
        await self._submit(ev.RunOutputsLogged(req.id, models=[ev.ModelRef(m.model_id, m.step) for m in req.models]))
        return {}


def _metric(key: str | None, value: float | None, timestamp: int | None, step: int | None,
            model_id: str | None, dataset_name: str | None, dataset_digest: str | None) -> ev.Metric:
    return ev.Metric(key=key, value=value, timestamp=timestamp, step=step or 0,  # type: ignore[arg-type]
                     model_id=model_id or None, dataset_name=dataset_name or None,
                     dataset_digest=dataset_digest or None)


def _check_params(snap: RunSnapshot, params: list[ev.Tag], *, single: bool) -> None:
    conflicts = []
    for p in params:
        old = snap.params.get(encode_key(p.key))
        if old is not None and old != p.value:
            conflicts.append({"key": p.key, "old_value": old, "new_value": p.value})
    if conflicts:
        raise MlflowError.invalid(v.param_conflict_message(snap.run_id, conflicts, single=single))
