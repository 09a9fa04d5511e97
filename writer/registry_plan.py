"""Planning rules for model registry events. Pure: no I/O (the store loaded the state).

Registry writes are human-scale (a few per deployment step), so each event gets writes of its own,
carrying the event id: the store applies them in event order, one event at a time, and a
duplicate name caught by the unique index (a concurrent create in another partition) becomes that
event's RESOURCE_ALREADY_EXISTS.

Every model's events share one partition and are applied in order by one writer, so a new
version takes the model's `next_version`: numbers are never reused and never skipped. A
redelivered create is recognised by the event id stored on the version it created.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from common import events as ev
from common import registry as reg
from common.errors import MlflowError
from common.keys import decode_key, encode_key
from common.mongo import MODEL_VERSIONS, REGISTERED_MODELS
from writer.writes import Write


@dataclass
class RegistryState:
    """What the store loaded for a batch's registry events."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> registered model
    names: dict[str, str] = field(default_factory=dict)  # name -> key, for the names the batch uses
    versions: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # key -> version -> doc


def _tags_of(doc: dict[str, Any]) -> dict[str, str]:
    return {decode_key(k): val for k, val in (doc.get("tags") or {}).items()}


def _assign(doc: dict[str, Any], path: str, value: Any) -> None:
    """`$set` on the working copy (paths have at most one dot: `tags.<encoded key>`)."""
    head, _, tail = path.partition(".")
    if tail:
        doc.setdefault(head, {})[tail] = value
    else:
        doc[head] = value


def _remove(doc: dict[str, Any], path: str) -> None:
    head, _, tail = path.partition(".")
    if tail:
        (doc.get(head) or {}).pop(tail, None)
    else:
        doc.pop(head, None)


class RegistryPlanner:
    def __init__(self, state: RegistryState):
        self.models = {k: copy.deepcopy(d) for k, d in state.models.items()}
        self.names = dict(state.names)
        self.versions = {k: {n: copy.deepcopy(d) for n, d in vs.items()} for k, vs in state.versions.items()}
        self.writes: list[Write] = []  # in event order, each carrying its event id
        self.assigned: dict[str, int] = {}

    # --- lookups ---------------------------------------------------------------------------

    def _model(self, key: str, name: str) -> dict[str, Any]:
        doc = self.models.get(key)
        if doc is None:
            raise reg.model_not_found(name)
        return doc

    def _version(self, key: str, name: str, version: int) -> dict[str, Any]:
        self._model(key, name)
        doc = self.versions.get(key, {}).get(version)
        if doc is None:
            raise reg.version_not_found(name, version)
        return doc

    def _emit(self, event_id: str, write: Write) -> None:
        write.event_id = event_id
        self.writes.append(write)

    def _touch_model(self, event_id: str, doc: dict[str, Any], time: int) -> None:
        doc["last_updated_timestamp"] = time
        self._emit(event_id, Write(REGISTERED_MODELS, {"_id": doc["_id"]},
                                           update={"$set": {"last_updated_timestamp": time}}))

    def _set_version(self, event_id: str, doc: dict[str, Any], sets: dict[str, Any],
                     unsets: tuple[str, ...] = ()) -> None:
        for path, value in sets.items():
            _assign(doc, path, value)
        for path in unsets:
            _remove(doc, path)
        update: dict[str, Any] = {}
        if sets:
            update["$set"] = sets
        if unsets:
            update["$unset"] = {p: "" for p in unsets}
        self._emit(event_id, Write(MODEL_VERSIONS, {"_id": doc["_id"]}, update=update))

    # --- events ----------------------------------------------------------------------------

    def apply(self, e: ev.RegistryEvent, event_id: str) -> None:
        handler = getattr(self, "_" + type(e).__name__)
        handler(e, event_id)

    def _RegisteredModelCreated(self, e: ev.RegisteredModelCreated, event_id: str) -> None:
        if e.model_key in self.models:
            return  # redelivery of an applied create
        new_prompt = reg.is_prompt({t.key: t.value for t in e.tags})
        owner = self.names.get(e.name)
        if owner is not None:
            raise reg.already_exists(e.name, bool(self.models.get(owner, {}).get("prompt")), new_prompt)
        doc = reg.new_registered_model_document(key=e.model_key, name=e.name, time=e.time, description=e.description,
                                                tags=[(t.key, t.value) for t in e.tags])
        self.models[e.model_key] = doc
        self.names[e.name] = e.model_key
        self.versions.setdefault(e.model_key, {})
        self._emit(event_id, Write(REGISTERED_MODELS, {"_id": e.model_key}, replacement=doc,
                                           on_duplicate=reg.already_exists(e.name, new_prompt, new_prompt).message))

    def _RegisteredModelRenamed(self, e: ev.RegisteredModelRenamed, event_id: str) -> None:
        doc = self._model(e.model_key, e.name)
        owner = self.names.get(e.new_name)
        message = f"Registered Model (name={e.new_name}) already exists."
        if owner is not None and owner != e.model_key:
            raise MlflowError(message, "RESOURCE_ALREADY_EXISTS")
        self.names.pop(doc["name"], None)
        self.names[e.new_name] = e.model_key
        doc.update(name=e.new_name, last_updated_timestamp=e.time)
        self._emit(event_id, Write(REGISTERED_MODELS, {"_id": e.model_key}, on_duplicate=message,
                                           update={"$set": {"name": e.new_name, "last_updated_timestamp": e.time}}))
        for vdoc in self.versions.get(e.model_key, {}).values():
            vdoc.update(name=e.new_name, last_updated_timestamp=e.time)
        self._emit(event_id, Write(MODEL_VERSIONS, {"rm": e.model_key}, many=True, update={
            "$set": {"name": e.new_name, "last_updated_timestamp": e.time}}))

    def _RegisteredModelUpdated(self, e: ev.RegisteredModelUpdated, event_id: str) -> None:
        doc = self._model(e.model_key, e.name)
        doc.update(description=e.description, last_updated_timestamp=e.time)
        self._emit(event_id, Write(REGISTERED_MODELS, {"_id": e.model_key}, update={
            "$set": {"description": e.description, "last_updated_timestamp": e.time}}))

    def _RegisteredModelDeleted(self, e: ev.RegisteredModelDeleted, event_id: str) -> None:
        doc = self._model(e.model_key, e.name)
        del self.models[e.model_key]
        self.names.pop(doc["name"], None)
        self.versions.pop(e.model_key, None)
        # Versions first: a crash in between leaves the model, and the replay deletes both.
        self._emit(event_id, Write(MODEL_VERSIONS, {"rm": e.model_key}, many=True, delete=True))
        self._emit(event_id, Write(REGISTERED_MODELS, {"_id": e.model_key}, delete=True))

    def _model_tags_changed(self, event_id: str, doc: dict[str, Any], update: dict[str, Any]) -> None:
        prompt = reg.is_prompt(_tags_of(doc))
        if prompt != bool(doc.get("prompt")):
            doc["prompt"] = prompt
            update.setdefault("$set", {})["prompt"] = prompt
        self._emit(event_id, Write(REGISTERED_MODELS, {"_id": doc["_id"]}, update=update))

    def _RegisteredModelTagSet(self, e: ev.RegisteredModelTagSet, event_id: str) -> None:
        doc = self._model(e.model_key, e.name)
        enc = encode_key(e.key)
        doc.setdefault("tags", {})[enc] = e.value
        self._model_tags_changed(event_id, doc, {"$set": {f"tags.{enc}": e.value}})

    def _RegisteredModelTagDeleted(self, e: ev.RegisteredModelTagDeleted, event_id: str) -> None:
        doc = self._model(e.model_key, e.name)
        enc = encode_key(e.key)
        if enc in (doc.get("tags") or {}):  # MLflow: deleting a missing tag is not an error
            del doc["tags"][enc]
            self._model_tags_changed(event_id, doc, {"$unset": {f"tags.{enc}": ""}})

    def _RegisteredModelAliasSet(self, e: ev.RegisteredModelAliasSet, event_id: str) -> None:
        self._version(e.model_key, e.name, e.version)
        doc = self.models[e.model_key]
        doc.setdefault("aliases", {})[e.alias] = e.version
        self._emit(event_id, Write(REGISTERED_MODELS, {"_id": e.model_key},
                                           update={"$set": {f"aliases.{e.alias}": e.version}}))

    def _RegisteredModelAliasDeleted(self, e: ev.RegisteredModelAliasDeleted, event_id: str) -> None:
        doc = self._model(e.model_key, e.name)
        if e.alias in (doc.get("aliases") or {}):
            del doc["aliases"][e.alias]
            self._emit(event_id, Write(REGISTERED_MODELS, {"_id": e.model_key},
                                               update={"$unset": {f"aliases.{e.alias}": ""}}))

    def _ModelVersionCreated(self, e: ev.ModelVersionCreated, event_id: str) -> None:
        doc = self._model(e.model_key, e.name)
        versions = self.versions.setdefault(e.model_key, {})
        replayed = next((n for n, d in versions.items() if d.get("event") == event_id), None)
        if replayed is not None:
            self.assigned[event_id] = replayed
            return
        number = max(int(doc.get("next_version", 1)), max(versions, default=0) + 1)
        vdoc = reg.new_model_version_document(
            key=e.model_key, name=doc["name"], version=number, time=e.time, source=e.source,
            storage_location=e.storage_location, run_id=e.run_id, run_link=e.run_link, description=e.description,
            model_id=e.model_id, tags=[(t.key, t.value) for t in e.tags], event_id=event_id)
        versions[number] = vdoc
        doc.update(next_version=number + 1, last_updated_timestamp=e.time)
        self.assigned[event_id] = number
        # The version first: the model's counter never runs ahead of a stored version it skipped.
        self._emit(event_id, Write(MODEL_VERSIONS, {"_id": vdoc["_id"]}, replacement=vdoc))
        self._emit(event_id, Write(REGISTERED_MODELS, {"_id": e.model_key}, update={
            "$max": {"next_version": number + 1}, "$set": {"last_updated_timestamp": e.time}}))

    def _ModelVersionUpdated(self, e: ev.ModelVersionUpdated, event_id: str) -> None:
        vdoc = self._version(e.model_key, e.name, e.version)
        if e.description is None:  # MLflow stores the absent description as None: it clears it
            self._set_version(event_id, vdoc, {"last_updated_timestamp": e.time}, ("description",))
        else:
            self._set_version(event_id, vdoc, {"description": e.description, "last_updated_timestamp": e.time})

    def _ModelVersionStageSet(self, e: ev.ModelVersionStageSet, event_id: str) -> None:
        vdoc = self._version(e.model_key, e.name, e.version)
        if e.archive_existing:
            for other in self.versions[e.model_key].values():
                if other is not vdoc and other.get("current_stage") == e.stage:
                    self._set_version(event_id, other, {"current_stage": reg.STAGE_ARCHIVED,
                                                        "last_updated_timestamp": e.time})
        self._set_version(event_id, vdoc, {"current_stage": e.stage, "last_updated_timestamp": e.time})
        self._touch_model(event_id, self.models[e.model_key], e.time)

    def _ModelVersionDeleted(self, e: ev.ModelVersionDeleted, event_id: str) -> None:
        vdoc = self._version(e.model_key, e.name, e.version)
        doc = self.models[e.model_key]
        del self.versions[e.model_key][e.version]
        self._emit(event_id, Write(MODEL_VERSIONS, {"_id": vdoc["_id"]}, delete=True))
        gone = [a for a, ver in (doc.get("aliases") or {}).items() if ver == e.version]
        for alias in gone:
            del doc["aliases"][alias]
        doc["last_updated_timestamp"] = e.time
        update: dict[str, Any] = {"$set": {"last_updated_timestamp": e.time}}
        if gone:
            update["$unset"] = {f"aliases.{a}": "" for a in gone}
        self._emit(event_id, Write(REGISTERED_MODELS, {"_id": e.model_key}, update=update))

    def _version_tags_changed(self, event_id: str, vdoc: dict[str, Any], sets: dict[str, Any],
                              unsets: tuple[str, ...]) -> None:
        tags = _tags_of(vdoc)
        for path, value in sets.items():
            tags[decode_key(path.partition(".")[2])] = value
        for path in unsets:
            tags.pop(decode_key(path.partition(".")[2]), None)
        prompt = reg.is_prompt(tags)
        if prompt != bool(vdoc.get("prompt")):
            sets = {**sets, "prompt": prompt}
        self._set_version(event_id, vdoc, sets, unsets)

    def _ModelVersionTagSet(self, e: ev.ModelVersionTagSet, event_id: str) -> None:
        vdoc = self._version(e.model_key, e.name, e.version)
        self._version_tags_changed(event_id, vdoc, {f"tags.{encode_key(e.key)}": e.value}, ())

    def _ModelVersionTagDeleted(self, e: ev.ModelVersionTagDeleted, event_id: str) -> None:
        vdoc = self._version(e.model_key, e.name, e.version)
        enc = encode_key(e.key)
        if enc in (vdoc.get("tags") or {}):  # MLflow: deleting a missing tag is not an error
            self._version_tags_changed(event_id, vdoc, {}, (f"tags.{enc}",))
