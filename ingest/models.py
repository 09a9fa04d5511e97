"""MLflow 3 logged-model writes: create, finalize, tags, params, delete.

Same pattern as runs: validate, one event through the queue, answer after the commit.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from common import documents
from common import events as ev
from common import validation as v
from common.clock import now_ms
from common.errors import MlflowError
from ingest import requests as rq
from ingest.bus import EventBus
from ingest.lookups import Lookups
from ingest.names import random_run_name

MODEL_STATUSES = ("LOGGED_MODEL_STATUS_UNSPECIFIED", "LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY",
                  "LOGGED_MODEL_UPLOAD_FAILED")
MODEL_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")
_BAD_NAME_CHARS = ("/", ":", ".", "%", '"', "'")


def parse_status(raw: int | str) -> str:
    if isinstance(raw, int) and 0 <= raw < len(MODEL_STATUSES):
        return MODEL_STATUSES[raw]
    if isinstance(raw, str) and raw in MODEL_STATUSES:
        return raw
    if isinstance(raw, str) and raw.isdigit():
        return parse_status(int(raw))
    raise MlflowError.invalid(v.invalid_value("status", raw))


def validate_model_name(name: str | None) -> None:
    if name is not None and (not name or any(c in name for c in _BAD_NAME_CHARS)):
        raise MlflowError.invalid(
            f"Invalid model name ({name!r}) provided. Model name must be a non-empty string "
            f"and cannot contain the following characters: {_BAD_NAME_CHARS}")


class LoggedModelService:
    def __init__(self, bus: EventBus, lookups: Lookups):
        self._bus = bus
        self._lookups = lookups

    async def _existing(self, model_id: str) -> dict[str, Any]:
        doc = await self._lookups.logged_model(model_id) if MODEL_ID_RE.match(model_id) else None
        if doc is None:
            raise MlflowError.not_found(f"Logged model with ID '{model_id}' not found.")
        return doc

    async def _rendered(self, model_id: str) -> dict[str, Any]:
        return {"model": documents.logged_model(await self._existing(model_id))}

    async def create(self, req: rq.CreateLoggedModel) -> dict[str, Any]:
        validate_model_name(req.name)
        v.validate_experiment_id(req.experiment_id)
        exp = await self._lookups.experiment(req.experiment_id)
        if exp is None:
            raise MlflowError.not_found(v.experiment_not_found_message(req.experiment_id))
        if exp.lifecycle_stage != "active":
            raise MlflowError.invalid(v.experiment_not_active_message(req.experiment_id, exp.lifecycle_stage))
        for i, kv in enumerate([*req.params, *req.tags]):
            if not kv.key:
                raise MlflowError.invalid(v.missing_value(f"key[{i}]"))
        model_id = f"m-{uuid.uuid4().hex}"
        event = ev.LoggedModelCreated(
            model_id=model_id, experiment_id=req.experiment_id, name=req.name or random_run_name(),
            artifact_location=documents.model_artifact_location(exp.artifact_location, model_id),
            creation_timestamp_ms=now_ms(), model_type=req.model_type or "", source_run_id=req.source_run_id or None,
            tags=[ev.Tag(t.key or "", t.value or "") for t in req.tags],
            params=[ev.Tag(p.key or "", p.value or "") for p in req.params],
        )
        await self._bus.submit(event, "committed")
        doc = documents.new_logged_model_document(
            model_id=model_id, experiment_id=event.experiment_id, name=event.name,
            artifact_location=event.artifact_location, creation_timestamp_ms=event.creation_timestamp_ms,
            model_type=event.model_type, source_run_id=event.source_run_id,
            tags=[(t.key, t.value) for t in event.tags], params=[(p.key, p.value) for p in event.params])
        return {"model": documents.logged_model(doc)}

    async def finalize(self, model_id: str, req: rq.FinalizeLoggedModel) -> dict[str, Any]:
        status = parse_status(req.status)
        await self._existing(model_id)
        await self._bus.submit(ev.LoggedModelFinalized(model_id, status, now_ms()), "committed")
        return await self._rendered(model_id)

    async def set_tags(self, model_id: str, req: rq.SetLoggedModelTags) -> dict[str, Any]:
        await self._existing(model_id)
        tags = [ev.Tag(t.key or "", t.value or "") for t in req.tags]
        for t in tags:
            v.validate_tag_name(t.key)
        await self._bus.submit(ev.LoggedModelTagsSet(model_id, tags, now_ms()), "committed")
        return {}

    async def delete_tag(self, model_id: str, key: str) -> dict[str, Any]:
        await self._existing(model_id)
        await self._bus.submit(ev.LoggedModelTagDeleted(model_id, key), "committed")
        return {}

    async def log_params(self, model_id: str, req: rq.LogLoggedModelParams) -> dict[str, Any]:
        await self._existing(model_id)
        params = [ev.Tag(p.key or "", p.value or "") for p in req.params]
        for p in params:
            v.validate_param(p.key, p.value)
        await self._bus.submit(ev.LoggedModelParamsLogged(model_id, params), "committed")
        return {}

    async def delete(self, model_id: str) -> dict[str, Any]:
        await self._existing(model_id)
        await self._bus.submit(ev.LoggedModelDeleted(model_id, now_ms()), "committed")
        return {}
