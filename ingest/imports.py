"""Admin import endpoints: bring experiments, runs and logged models over from another MLflow with
their ids, times, status and lifecycle as they were (the migration tool, `genesis_flow/migrate/`).

The normal create endpoints assign ids and times; these take them from the caller and publish the
same events the normal path does, so the writer applies them with the same rules. Each call is
idempotent: an entity that exists already (same id) is brought to the given state instead of being
created twice, and the writer drops a redelivered create. They live under
`/api/2.0/genesis-flow/import/` so an auth layer can keep them to admins.

Params, tags and metric points after the first call go through the ordinary `runs/log-batch`
(the tool uses the enqueued ack mode). `run-state` tells the tool what a run already holds, which
is how a rerun copies only what is missing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from common import documents
from common import events as ev
from common import registry as reg
from common import registry_reads as reads
from common import validation as v
from common.clock import now_ms
from common.errors import RESOURCE_ALREADY_EXISTS, MlflowError
from common.keys import decode_key
from common.mongo import COUNTERS, METRICS, RUNS
from common.requests import decode_message, parse_json_body
from common.web import json_response
from ingest.bus import EventBus
from ingest.lookups import Lookups
from ingest.models import MODEL_ID_RE, parse_status, validate_model_name
from ingest.requests import KeyValue
from ingest.service import RUN_NAME_TAG, RUN_STATUSES, event_tags

PREFIX = "/api/2.0/genesis-flow/import"
LIFECYCLE_STAGES = ("active", "deleted")
_NUMERIC_ID = re.compile(r"^[0-9]{1,18}$")  # fits the int64 experiment-id counter


# --- request messages --------------------------------------------------------------------------


class ImportExperiment(msgspec.Struct):
    experiment_id: str
    name: str
    lifecycle_stage: str = "active"
    creation_time: int | None = None
    last_update_time: int | None = None
    tags: list[KeyValue] = []


class ImportRun(msgspec.Struct):
    run_id: str
    experiment_id: str
    user_id: str | None = None
    run_name: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    status: str = "RUNNING"
    lifecycle_stage: str = "active"
    deleted_time: int | None = None
    params: list[KeyValue] = []
    tags: list[KeyValue] = []


class RunStateRequest(msgspec.Struct):
    run_id: str


class ImportLoggedModel(msgspec.Struct):
    model_id: str
    experiment_id: str
    name: str
    creation_timestamp_ms: int | None = None
    last_updated_timestamp_ms: int | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    status: int | str = "LOGGED_MODEL_READY"
    lifecycle_stage: str = "active"
    params: list[KeyValue] = []
    tags: list[KeyValue] = []


class ImportRegisteredModel(msgspec.Struct):
    name: str
    creation_timestamp: int | None = None
    description: str | None = None
    tags: list[KeyValue] = []


R, S, I, A = v.REQUIRED, v.STRING, v.INTLIKE, v.ARRAY

SCHEMAS: dict[type, v.Schema] = {
    ImportExperiment: {"experiment_id": (R, S), "name": (R, S), "lifecycle_stage": (S,), "creation_time": (I,),
                       "last_update_time": (I,), "tags": (A,)},
    ImportRun: {"run_id": (R, S), "experiment_id": (R, S), "user_id": (S,), "run_name": (S,), "start_time": (I,),
                "end_time": (I,), "status": (S,), "lifecycle_stage": (S,), "deleted_time": (I,), "params": (A,),
                "tags": (A,)},
    RunStateRequest: {"run_id": (R, S)},
    ImportRegisteredModel: {"name": (R, S), "creation_timestamp": (I,), "description": (S,), "tags": (A,)},
    ImportLoggedModel: {"model_id": (R, S), "experiment_id": (R, S), "name": (R, S), "creation_timestamp_ms": (I,),
                        "last_updated_timestamp_ms": (I,), "model_type": (S,), "source_run_id": (S,),
                        "lifecycle_stage": (S,), "params": (A,), "tags": (A,)},
}


def _check_stage(stage: str) -> None:
    if stage not in LIFECYCLE_STAGES:
        raise MlflowError.invalid(v.invalid_value("lifecycle_stage", stage))


def _check_keys(items: list[KeyValue], path: str) -> None:
    for i, kv in enumerate(items):
        if not kv.key:
            raise MlflowError.invalid(v.missing_value(f"{path}[{i}].key"))


class ImportService:
    def __init__(self, db: AsyncDatabase, bus: EventBus, lookups: Lookups):
        self._db = db
        self._bus = bus
        self._lookups = lookups

    async def _submit(self, event: ev.Event) -> None:
        await self._bus.submit(event, "committed")  # imports answer with the committed state

    # --- experiments -----------------------------------------------------------------------

    async def experiment(self, req: ImportExperiment) -> dict[str, Any]:
        v.validate_experiment_id(req.experiment_id)
        v.validate_experiment_name(req.name)
        _check_stage(req.lifecycle_stage)
        _check_keys(req.tags, "tags")
        for t in req.tags:
            v.validate_experiment_tag(t.key, t.value)
        exp = await self._lookups.experiment(req.experiment_id)
        created = exp is None
        if exp is None:
            owner = await self._lookups.experiment_id_by_name(req.name)
            if owner is not None:
                raise MlflowError(f"Experiment(name={req.name}) already exists with id {owner}, not "
                                  f"{req.experiment_id}.", RESOURCE_ALREADY_EXISTS)
            if _NUMERIC_ID.match(req.experiment_id):
                # experiments created later must not be given an imported id
                await self._db[COUNTERS].update_one(
                    {"_id": "experiment_id"}, {"$max": {"seq": int(req.experiment_id)}}, upsert=True)
            location = documents.experiment_artifact_location(req.experiment_id)
            await self._submit(ev.ExperimentCreated(
                experiment_id=req.experiment_id, name=req.name, artifact_location=location,
                creation_time=req.creation_time if req.creation_time is not None else now_ms(),
                tags=event_tags(req.tags), last_update_time=req.last_update_time))
            stage = "active"
        else:
            if exp.name != req.name:
                raise MlflowError(f"Experiment id {req.experiment_id} is taken by experiment '{exp.name}'.",
                                  RESOURCE_ALREADY_EXISTS)
            location, stage = exp.artifact_location, exp.lifecycle_stage
        time = req.last_update_time if req.last_update_time is not None else now_ms()
        if stage == "deleted" and req.lifecycle_stage == "active":
            await self._submit(ev.ExperimentRestored(req.experiment_id, time))
            stage = "active"
        if not created and stage == "active":
            for t in req.tags:  # assignments: repeating them is harmless
                await self._submit(ev.ExperimentTagSet(req.experiment_id, t.key or "", t.value or ""))
        if stage == "active" and req.lifecycle_stage == "deleted":
            await self._submit(ev.ExperimentDeleted(req.experiment_id, time))
            stage = "deleted"
        return {"experiment_id": req.experiment_id, "artifact_location": location, "created": created,
                "lifecycle_stage": stage}

    # --- runs ------------------------------------------------------------------------------

    async def run(self, req: ImportRun) -> dict[str, Any]:
        v.validate_run_id(req.run_id)
        v.validate_experiment_id(req.experiment_id)
        if req.status not in RUN_STATUSES:
            raise MlflowError.invalid(v.invalid_value("status", req.status))
        _check_stage(req.lifecycle_stage)
        _check_keys(req.params, "params")
        _check_keys(req.tags, "tags")
        for i, p in enumerate(req.params):
            v.validate_param(p.key, p.value or "", path=f"params[{i}]")
        v.validate_param_keys_unique(p.key or "" for p in req.params)
        for i, t in enumerate(req.tags):
            v.validate_tag(t.key, t.value or "", path=f"tags[{i}]")
        self._lookups.forget_run(req.run_id)  # lifecycle decisions read fresh
        snap = await self._lookups.run(req.run_id)
        tags = event_tags(req.tags)
        created = snap is None
        if snap is None:
            exp = await self._lookups.experiment(req.experiment_id)
            if exp is None:
                raise MlflowError.not_found(v.experiment_not_found_message(req.experiment_id))
            if exp.lifecycle_stage != "active":
                raise MlflowError.invalid(v.experiment_not_active_message(req.experiment_id, exp.lifecycle_stage))
            run_name = req.run_name or next((t.value for t in tags if t.key == RUN_NAME_TAG), "")
            if run_name and not any(t.key == RUN_NAME_TAG for t in tags):
                tags.append(ev.Tag(RUN_NAME_TAG, run_name))
            await self._submit(ev.RunCreated(
                run_id=req.run_id, experiment_id=req.experiment_id, user_id=req.user_id or "", run_name=run_name,
                start_time=req.start_time if req.start_time is not None else now_ms(),
                artifact_uri=documents.run_artifact_uri(exp.artifact_location, req.run_id), tags=tags))
            stage = "active"
            tags = []  # carried by the create
        else:
            if snap.experiment_id != req.experiment_id:
                raise MlflowError(f"Run '{req.run_id}' already exists in experiment {snap.experiment_id}.",
                                  RESOURCE_ALREADY_EXISTS)
            stage = snap.lifecycle_stage
        if stage == "deleted" and req.lifecycle_stage == "active":
            await self._submit(ev.RunRestored(req.run_id, now_ms()))
            stage = "active"
        if stage == "active":
            params = event_tags(req.params)
            if params or tags:
                await self._submit(ev.RunDataLogged(req.run_id, params=params, tags=tags))
            await self._submit(ev.RunUpdated(req.run_id, status=req.status, end_time=req.end_time,
                                             run_name=req.run_name or None))
        if stage == "active" and req.lifecycle_stage == "deleted":
            time = req.deleted_time if req.deleted_time is not None else req.end_time or now_ms()
            await self._submit(ev.RunDeleted(req.run_id, time))
            stage = "deleted"
        self._lookups.forget_run(req.run_id)
        doc = await self._lookups.run_info_document(req.run_id) or {}
        return {"run_id": req.run_id, "artifact_uri": doc.get("artifact_uri", ""), "created": created,
                "lifecycle_stage": stage}

    async def run_state(self, req: RunStateRequest) -> dict[str, Any]:
        """What the target holds of a run: its info, how many params and tags, and the number of
        stored points of every metric history (committed ones: the tool asks after a committed call)."""
        v.validate_run_id(req.run_id)
        doc = await self._db[RUNS].find_one(
            {"_id": req.run_id}, {"params": 1, "tags": 1, "experiment_id": 1, "lifecycle_stage": 1, "status": 1,
                                  "artifact_uri": 1, "dataset_inputs": 1})
        if doc is None:
            return {"run_id": req.run_id, "exists": False}
        points: dict[str, int] = {}
        async for bucket in self._db[METRICS].find({"run_id": req.run_id}, {"key": 1, "n": 1}):
            key = decode_key(bucket["key"])
            points[key] = points.get(key, 0) + int(bucket.get("n", 0))
        return {"run_id": req.run_id, "exists": True, "experiment_id": doc["experiment_id"],
                "lifecycle_stage": doc.get("lifecycle_stage", "active"), "status": doc.get("status"),
                "artifact_uri": doc.get("artifact_uri", ""),
                "params": {decode_key(k): val for k, val in (doc.get("params") or {}).items()},
                "tag_keys": sorted(decode_key(k) for k in (doc.get("tags") or {})),
                "datasets": len(doc.get("dataset_inputs") or []), "metric_points": points}

    # --- logged models -----------------------------------------------------------------------

    async def logged_model(self, req: ImportLoggedModel) -> dict[str, Any]:
        if not MODEL_ID_RE.match(req.model_id):
            raise MlflowError.invalid(v.invalid_value("model_id", req.model_id))
        validate_model_name(req.name)
        v.validate_experiment_id(req.experiment_id)
        status = parse_status(req.status)
        _check_stage(req.lifecycle_stage)
        _check_keys(req.params, "params")
        _check_keys(req.tags, "tags")
        for p in req.params:
            v.validate_param(p.key, p.value or "")
        for t in req.tags:
            v.validate_tag_name(t.key)
        if req.source_run_id:
            v.validate_run_id(req.source_run_id, path="source_run_id")
        existing = await self._lookups.logged_model(req.model_id)
        tags, params = event_tags(req.tags), event_tags(req.params)
        time = req.last_updated_timestamp_ms if req.last_updated_timestamp_ms is not None else now_ms()
        if existing is None:
            exp = await self._lookups.experiment(req.experiment_id)
            if exp is None:
                raise MlflowError.not_found(v.experiment_not_found_message(req.experiment_id))
            if exp.lifecycle_stage != "active":
                raise MlflowError.invalid(v.experiment_not_active_message(req.experiment_id, exp.lifecycle_stage))
            location = documents.model_artifact_location(exp.artifact_location, req.model_id)
            await self._submit(ev.LoggedModelCreated(
                model_id=req.model_id, experiment_id=req.experiment_id, name=req.name, artifact_location=location,
                creation_timestamp_ms=req.creation_timestamp_ms if req.creation_timestamp_ms is not None else now_ms(),
                model_type=req.model_type or "", source_run_id=req.source_run_id or None, tags=tags, params=params))
        else:
            if existing.get("experiment_id") != req.experiment_id:
                raise MlflowError(f"Logged model '{req.model_id}' already exists in experiment "
                                  f"{existing.get('experiment_id')}.", RESOURCE_ALREADY_EXISTS)
            location = existing.get("artifact_location", "")
            if tags:
                await self._submit(ev.LoggedModelTagsSet(req.model_id, tags, time))
            if params:
                await self._submit(ev.LoggedModelParamsLogged(req.model_id, params))
        await self._submit(ev.LoggedModelFinalized(req.model_id, status, time))
        if req.lifecycle_stage == "deleted":
            await self._submit(ev.LoggedModelDeleted(req.model_id, time))
        return {"model_id": req.model_id, "artifact_location": location, "created": existing is None}


    # --- the registry ------------------------------------------------------------------------

    async def registered_model(self, req: ImportRegisteredModel) -> dict[str, Any]:
        """A registered model with its creation time (versions then go through the ordinary
        endpoints, in order, so their numbers stay the writer's to assign)."""
        reg.validate_model_name(req.name)
        _check_keys(req.tags, "tags")
        for t in req.tags:
            reg.validate_registered_model_tag(t.key, t.value)
        existing = await reads.find_model(self._db, req.name)
        if existing is None:
            time = req.creation_timestamp if req.creation_timestamp is not None else now_ms()
            await self._submit(ev.RegisteredModelCreated(f"rm-{uuid.uuid4().hex}", req.name, time,
                                                         req.description or None, event_tags(req.tags)))
        else:
            for t in req.tags:
                await self._submit(ev.RegisteredModelTagSet(existing["_id"], req.name, t.key or "", t.value or ""))
        return {"name": req.name, "created": existing is None}


# --- routes ------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.Response]]


def import_routes(service: ImportService) -> list[tuple[str, str, Handler]]:
    """(method, full path, handler) for every import endpoint."""

    def endpoint(kind: type, call: Callable[[Any], Awaitable[dict[str, Any]]]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            body = parse_json_body(await request.read())
            return json_response(await call(decode_message(body, kind, SCHEMAS[kind])))
        return handler

    s = service
    return [
        ("POST", f"{PREFIX}/experiment", endpoint(ImportExperiment, s.experiment)),
        ("POST", f"{PREFIX}/run", endpoint(ImportRun, s.run)),
        ("POST", f"{PREFIX}/run-state", endpoint(RunStateRequest, s.run_state)),
        ("POST", f"{PREFIX}/logged-model", endpoint(ImportLoggedModel, s.logged_model)),
        ("POST", f"{PREFIX}/registered-model", endpoint(ImportRegisteredModel, s.registered_model)),
    ]

