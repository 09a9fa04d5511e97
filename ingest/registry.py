"""Model registry writes: registered models, versions, tags, aliases, stages (and so prompts,
which MLflow stores as registered models and versions with prompt tags).

Same pattern as every write: validate in MLflow's order with MLflow's messages, one event through
the queue, answer after the commit. The writer is the authority (it numbers versions and re-checks
what may have changed since); ingest reads MongoDB only to refuse early and to answer with the
committed entity, as the reference server does.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from common import events as ev
from common import registry as reg
from common import registry_reads as reads
from common import registry_sources as src
from common import validation as v
from common.clock import now_ms
from common.errors import MlflowError
from common.keys import encode_key
from common.requests import decode_message, parse_json_body
from common.web import json_response
from ingest.bus import EventBus
from ingest.requests import KeyValue
from ingest.service import event_tags
from ingest.lookups import Lookups

# --- request messages (model_registry.proto) and the handler schemas ----------------------------


class CreateRegisteredModel(msgspec.Struct):
    name: str
    tags: list[KeyValue] = []
    description: str | None = None


class RenameRegisteredModel(msgspec.Struct):
    name: str
    new_name: str | None = None


class UpdateRegisteredModel(msgspec.Struct):
    name: str
    description: str | None = None


class ModelName(msgspec.Struct):
    name: str


class ModelTag(msgspec.Struct):
    name: str
    key: str
    value: str | None = None


class SetAlias(msgspec.Struct):
    name: str
    alias: str
    version: str


class DeleteAlias(msgspec.Struct):
    name: str
    alias: str


class CreateModelVersion(msgspec.Struct):
    name: str
    source: str
    run_id: str | None = None
    tags: list[KeyValue] = []
    run_link: str | None = None
    description: str | None = None
    model_id: str | None = None


class VersionRef(msgspec.Struct):
    name: str
    version: str


class UpdateModelVersion(VersionRef):
    description: str | None = None


class TransitionStage(VersionRef):
    stage: str
    archive_existing_versions: bool = False


class VersionTag(VersionRef):
    key: str
    value: str | None = None


R, S, A, B = v.REQUIRED, v.STRING, v.ARRAY, v.BOOL

SCHEMAS: dict[type, v.Schema] = {
    CreateRegisteredModel: {"name": (S, R), "tags": (A,), "description": (S,)},
    RenameRegisteredModel: {"name": (S, R), "new_name": (S, R)},
    UpdateRegisteredModel: {"name": (S, R), "description": (S,)},
    ModelName: {"name": (S, R)},
    ModelTag: {"name": (S, R), "key": (S, R), "value": (S,)},
    SetAlias: {"name": (S, R), "alias": (S, R), "version": (S, R)},
    DeleteAlias: {"name": (S, R), "alias": (S, R)},
    CreateModelVersion: {"name": (S, R), "source": (S, R), "run_id": (S,), "tags": (A,), "run_link": (S,),
                         "description": (S,), "model_id": (S,)},
    VersionRef: {"name": (S, R), "version": (S, R)},
    UpdateModelVersion: {"name": (S, R), "version": (S, R), "description": (S,)},
    TransitionStage: {"name": (S, R), "version": (S, R), "stage": (S, R), "archive_existing_versions": (B,)},
    VersionTag: {"name": (S, R), "version": (S, R), "key": (S, R), "value": (S,)},
}


class RegistryService:
    def __init__(self, db: AsyncDatabase, bus: EventBus, lookups: Lookups):
        self._db = db
        self._bus = bus
        self._lookups = lookups

    async def _submit(self, event: ev.Event) -> int | None:
        return await self._bus.submit(event, "committed")  # registry writes always wait for the commit

    # --- registered models -----------------------------------------------------------------

    async def create_model(self, req: CreateRegisteredModel, _: dict[str, Any]) -> dict[str, Any]:
        reg.validate_model_name(req.name)
        for t in req.tags:
            reg.validate_registered_model_tag(t.key, t.value)
        tags = event_tags(req.tags)
        existing = await reads.find_model(self._db, req.name)
        if existing is not None:
            raise reg.already_exists(req.name, bool(existing.get("prompt")), reg.is_prompt({t.key: t.value for t in tags}))
        key = f"rm-{uuid.uuid4().hex}"
        await self._submit(ev.RegisteredModelCreated(key, req.name, now_ms(), req.description or None, tags))
        return {"registered_model": await reads.rendered_model(self._db, await reads.model(self._db, req.name))}

    async def rename_model(self, req: RenameRegisteredModel, _: dict[str, Any]) -> dict[str, Any]:
        new_name = reg.validate_new_name(req.new_name)
        doc = await reads.model(self._db, req.name)
        owner = await reads.find_model(self._db, new_name)
        if owner is not None and owner["_id"] != doc["_id"]:
            raise MlflowError(f"Registered Model (name={new_name}) already exists.", "RESOURCE_ALREADY_EXISTS")
        await self._submit(ev.RegisteredModelRenamed(doc["_id"], req.name, new_name, now_ms()))
        return {"registered_model": await reads.rendered_model(self._db, await reads.model(self._db, new_name))}

    async def update_model(self, req: UpdateRegisteredModel, _: dict[str, Any]) -> dict[str, Any]:
        doc = await reads.model(self._db, req.name)
        await self._submit(ev.RegisteredModelUpdated(doc["_id"], req.name, req.description or "", now_ms()))
        return {"registered_model": await reads.rendered_model(self._db, await reads.model(self._db, req.name))}

    async def delete_model(self, req: ModelName, _: dict[str, Any]) -> dict[str, Any]:
        doc = await reads.model(self._db, req.name)
        await self._submit(ev.RegisteredModelDeleted(doc["_id"], req.name, now_ms()))
        return {}

    async def set_model_tag(self, req: ModelTag, _: dict[str, Any]) -> dict[str, Any]:
        reg.validate_model_name(req.name)
        reg.validate_registered_model_tag(req.key, req.value)
        doc = await reads.model(self._db, req.name)
        await self._submit(ev.RegisteredModelTagSet(doc["_id"], req.name, req.key, req.value or ""))
        return {}

    async def delete_model_tag(self, req: ModelTag, _: dict[str, Any]) -> dict[str, Any]:
        reg.validate_model_name(req.name)
        v.validate_tag_name(req.key)
        doc = await reads.model(self._db, req.name)
        await self._submit(ev.RegisteredModelTagDeleted(doc["_id"], req.name, req.key))
        return {}

    async def set_alias(self, req: SetAlias, _: dict[str, Any]) -> dict[str, Any]:
        reg.validate_model_name(req.name)
        reg.validate_alias(req.alias)
        reg.validate_alias_not_reserved(req.alias)
        model_doc, vdoc = await reads.version(self._db, req.name, req.version)
        await self._submit(ev.RegisteredModelAliasSet(model_doc["_id"], req.name, req.alias, vdoc["version"]))
        return {}

    async def delete_alias(self, req: DeleteAlias, _: dict[str, Any]) -> dict[str, Any]:
        reg.validate_model_name(req.name)
        reg.validate_alias(req.alias)
        doc = await reads.model(self._db, req.name)
        await self._submit(ev.RegisteredModelAliasDeleted(doc["_id"], req.name, req.alias))
        return {}

    # --- model versions --------------------------------------------------------------------

    async def create_version(self, req: CreateModelVersion, body: dict[str, Any]) -> dict[str, Any]:
        tags = event_tags(req.tags)
        prompt = reg.is_prompt({t.key: t.value for t in tags})
        source, run_id, model_id = req.source, req.run_id or None, req.model_id or None
        if prompt:
            if source not in reg.PROMPT_SOURCE_PLACEHOLDERS:
                raise MlflowError.invalid(
                    f"Invalid prompt source: '{source}'. Prompt sources must use an MLflow placeholder.")
            storage_location = source
        else:
            source, run_id, model_id = await self._resolve_lineage(source, run_id, model_id, "run_id" in body,
                                                                   "model_id" in body)
            if model_id:
                await self._check_model_source(source, model_id)
            else:
                await self._check_run_source(source, run_id)
            storage_location, run_id = await self._storage_location(source, run_id, model_id)
        reg.validate_model_name(req.name)
        for t in req.tags:
            reg.validate_model_version_tag(t.key, t.value)
        doc = await reads.model(self._db, req.name)
        number = await self._submit(ev.ModelVersionCreated(
            doc["_id"], req.name, now_ms(), source=source, storage_location=storage_location, run_id=run_id,
            run_link=req.run_link or None, description=req.description or None, model_id=model_id, tags=tags))
        if model_id and not prompt:
            await self._link_logged_model(model_id, req.name, number)
        return {"model_version": await reads.rendered_version(self._db, req.name, number)}

    async def update_version(self, req: UpdateModelVersion, body: dict[str, Any]) -> dict[str, Any]:
        model_doc, vdoc = await reads.version(self._db, req.name, req.version)
        description = req.description if "description" in body else None
        await self._submit(ev.ModelVersionUpdated(model_doc["_id"], req.name, vdoc["version"], now_ms(), description))
        return {"model_version": await reads.rendered_version(self._db, req.name, vdoc["version"])}

    async def transition_stage(self, req: TransitionStage, _: dict[str, Any]) -> dict[str, Any]:
        stage = reg.canonical_stage(req.stage)
        if req.archive_existing_versions and stage not in reg.ACTIVE_STAGES:
            raise MlflowError(
                f"Model version transition cannot archive existing model versions because '{req.stage}' is not "
                f"an Active stage. Valid stages are {list(reg.ACTIVE_STAGES)}", "INVALID_PARAMETER_VALUE")
        model_doc, vdoc = await reads.version(self._db, req.name, req.version)
        await self._submit(ev.ModelVersionStageSet(model_doc["_id"], req.name, vdoc["version"], stage,
                                                   req.archive_existing_versions, now_ms()))
        return {"model_version": await reads.rendered_version(self._db, req.name, vdoc["version"])}

    async def delete_version(self, req: VersionRef, _: dict[str, Any]) -> dict[str, Any]:
        model_doc, vdoc = await reads.version(self._db, req.name, req.version)
        await self._submit(ev.ModelVersionDeleted(model_doc["_id"], req.name, vdoc["version"], now_ms()))
        return {}

    async def set_version_tag(self, req: VersionTag, _: dict[str, Any]) -> dict[str, Any]:
        reg.validate_model_name(req.name)
        reg.validate_version(req.version)
        reg.validate_model_version_tag(req.key, req.value)
        model_doc, vdoc = await reads.version(self._db, req.name, req.version)
        await self._submit(ev.ModelVersionTagSet(model_doc["_id"], req.name, vdoc["version"], req.key, req.value or ""))
        return {}

    async def delete_version_tag(self, req: VersionTag, _: dict[str, Any]) -> dict[str, Any]:
        reg.validate_model_name(req.name)
        reg.validate_version(req.version)
        v.validate_tag_name(req.key)
        model_doc, vdoc = await reads.version(self._db, req.name, req.version)
        await self._submit(ev.ModelVersionTagDeleted(model_doc["_id"], req.name, vdoc["version"], req.key))
        return {}

    # --- sources ---------------------------------------------------------------------------

    async def _resolve_lineage(self, source: str, run_id: str | None, model_id: str | None,
                               has_run_id: bool, has_model_id: bool) -> tuple[str, str | None, str | None]:
        """A `models:/<name>/<version>` (or `@alias`) source is the version it names."""
        parsed = urllib.parse.urlparse(source)
        if parsed.scheme != "models":
            return source, run_id, model_id
        if parsed.netloc:
            raise MlflowError.invalid(f"Invalid model version source: '{source}'. Registered model sources must "
                                      "use the active model registry.")
        uri = src.parse_models_uri(source)
        if uri.model_id is not None:
            return source, run_id, model_id
        model_doc = await reads.model(self._db, uri.name or "")
        if model_doc.get("prompt"):
            raise MlflowError.invalid(f"Invalid model version source: '{source}'. Prompt versions cannot be used "
                                      "as model version sources.")
        number = (model_doc.get("aliases") or {}).get(uri.alias) if uri.alias else uri.version
        if number is None:
            raise MlflowError.invalid(f"Registered model alias {uri.alias} not found.")
        _, vdoc = await reads.version(self._db, model_doc["name"], number)
        if (has_run_id and (run_id or "") != (vdoc.get("run_id") or "")) or (
                has_model_id and (model_id or "") != (vdoc.get("model_id") or "")):
            raise MlflowError.invalid(f"Invalid model version source: '{source}'. The run_id and model_id request "
                                      "parameters must match the referenced model version.")
        return (f"models:/{model_doc['name']}/{vdoc['version']}", run_id if has_run_id else vdoc.get("run_id"),
                model_id if has_model_id else vdoc.get("model_id"))

    async def _check_run_source(self, source: str, run_id: str | None) -> None:
        if src.is_local(source):
            # Runs here store artifacts behind the proxy, never in a local directory of the server.
            raise MlflowError.invalid(
                f"Invalid model version source: '{source}'. To use a local path as a model version source, the "
                "run_id request parameter has to be specified and the local path has to be contained within the "
                "artifact directory of the run specified by the run_id.")
        src.check_no_relative_paths(source)
        scheme = urllib.parse.urlparse(source).scheme
        if scheme == "runs":
            if urllib.parse.urlparse(source).netloc or not run_id or src.runs_uri_run_id(source) != run_id:
                raise src.invalid_source(source, "run_id")
            return
        if scheme == "models":
            uri = src.parse_models_uri(source)
            if urllib.parse.urlparse(source).netloc or uri.model_id is not None:
                raise src.invalid_source(source, "model_id")
        if src.is_artifact_proxy_source(source):
            run = await self._run_doc(run_id, source) if run_id else None
            if run is None or not src.within_root(source, run.get("artifact_uri", "")):
                raise src.invalid_source(source, "run_id")

    async def _check_model_source(self, source: str, model_id: str) -> None:
        if src.is_local(source):
            raise MlflowError.invalid(
                f"Invalid model version source: '{source}'. To use a local path as a model version source, the "
                "model_id request parameter has to be specified and the local path has to be contained within the "
                "artifact directory of the run specified by the model_id.")
        src.check_no_relative_paths(source)
        parsed = urllib.parse.urlparse(source)
        if parsed.scheme == "models":
            if parsed.netloc:
                raise src.invalid_source(source, "model_id")
            uri = src.parse_models_uri(source)
            if uri.model_id is not None:
                if uri.model_id == model_id:
                    return
                raise src.invalid_source(source, "model_id")
        if parsed.scheme == "runs":
            raise src.invalid_source(source, "model_id")
        if src.is_artifact_proxy_source(source):
            model = await self._lookups.logged_model(model_id)
            if model is None or not src.within_root(source, model.get("artifact_location", "")):
                raise src.invalid_source(source, "model_id")

    async def _run_doc(self, run_id: str, source: str) -> dict[str, Any] | None:
        try:
            v.validate_run_id(run_id)
        except MlflowError:
            raise src.invalid_source(source, "run_id") from None
        doc = await self._lookups.run_info_document(run_id)
        if doc is None:
            raise src.invalid_source(source, "run_id")
        return doc

    async def _storage_location(self, source: str, run_id: str | None,
                                model_id: str | None) -> tuple[str, str | None]:
        """Where the version's files are (the download URI), and its run (a logged model's)."""
        location = source
        if urllib.parse.urlparse(source).scheme == "models":
            uri = src.parse_models_uri(source)
            if uri.model_id is not None:
                model = await self._lookups.logged_model(uri.model_id)
                if model is None:
                    raise MlflowError(f"Unable to fetch model from model URI source artifact location '{source}'."
                                      f"Error: Logged model with ID '{uri.model_id}' not found.",
                                      "INTERNAL_ERROR")
                location, run_id = model["artifact_location"], run_id or model.get("source_run_id")
            else:
                _, vdoc = await reads.version(self._db, uri.name or "", uri.version)
                location = vdoc.get("storage_location") or vdoc.get("source", "")
        if not run_id and model_id:
            model = await self._lookups.logged_model(model_id)
            run_id = (model or {}).get("source_run_id")
        return location, run_id

    async def _link_logged_model(self, model_id: str, name: str, number: int | None) -> None:
        """MLflow records on the logged model which versions it became (`mlflow.modelVersions`)."""
        model = await self._lookups.logged_model(model_id)
        if model is None:
            return
        entry = {"name": name, "version": number}
        existing = (model.get("tags") or {}).get(encode_key(reg.MODEL_VERSIONS_TAG))
        entries = json.loads(existing) if existing else []
        if entry not in entries:
            entries.append(entry)
        await self._bus.submit(ev.LoggedModelTagsSet(model_id, [ev.Tag(reg.MODEL_VERSIONS_TAG, json.dumps(entries))],
                                                     now_ms()), "committed")


# --- routes ----------------------------------------------------------------------------------

Call = Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]


def registry_routes(service: RegistryService) -> list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]]:
    """(method, path under the MLflow prefix, handler) for every registry write."""

    def endpoint(kind: type, call: Call):
        async def handler(request: web.Request) -> web.Response:
            body = parse_json_body(await request.read())
            return json_response(await call(decode_message(body, kind, SCHEMAS[kind]), body))
        return handler

    s = service
    return [
        ("POST", "/registered-models/create", endpoint(CreateRegisteredModel, s.create_model)),
        ("POST", "/registered-models/rename", endpoint(RenameRegisteredModel, s.rename_model)),
        ("PATCH", "/registered-models/update", endpoint(UpdateRegisteredModel, s.update_model)),
        ("DELETE", "/registered-models/delete", endpoint(ModelName, s.delete_model)),
        ("POST", "/registered-models/set-tag", endpoint(ModelTag, s.set_model_tag)),
        ("DELETE", "/registered-models/delete-tag", endpoint(ModelTag, s.delete_model_tag)),
        ("POST", "/registered-models/alias", endpoint(SetAlias, s.set_alias)),
        ("DELETE", "/registered-models/alias", endpoint(DeleteAlias, s.delete_alias)),
        ("POST", "/model-versions/create", endpoint(CreateModelVersion, s.create_version)),
        ("PATCH", "/model-versions/update", endpoint(UpdateModelVersion, s.update_version)),
        ("POST", "/model-versions/transition-stage", endpoint(TransitionStage, s.transition_stage)),
        ("DELETE", "/model-versions/delete", endpoint(VersionRef, s.delete_version)),
        ("POST", "/model-versions/set-tag", endpoint(VersionTag, s.set_version_tag)),
        ("DELETE", "/model-versions/delete-tag", endpoint(VersionTag, s.delete_version_tag)),
    ]
