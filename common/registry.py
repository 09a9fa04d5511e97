"""The model registry's shared rules: MLflow's validation and messages, stages, prompts, and the
registered-model / model-version documents with their REST rendering.

Ingest validates with these functions, the writer builds documents with them and query renders
them, so each rule lives here once. Sources: `mlflow/utils/validation.py`,
`mlflow/store/model_registry/sqlalchemy_store.py`, `mlflow/entities/model_registry/*`.

Documents (collections in `common/mongo.py`):

* ``registered_models``: ``_id`` = an internal key (``rm-<32 hex>``) that survives renames,
  ``name`` (unique index), timestamps, ``description``, ``tags`` (encoded keys), ``aliases``
  (alias -> version; alias names are ``[\\w-]``, safe as keys), ``next_version`` (the writer's
  per-model counter: versions are numbered in partition order, so never twice and never with a
  gap), ``prompt`` (the ``mlflow.prompt.is_prompt`` tag is ``true``).
* ``model_versions``: ``_id`` = ``<model key>:<version>``; ``rm`` (model key), ``name``,
  ``version`` (int), the version's fields, ``tags``, ``prompt`` (its own is-prompt tag), and
  ``event`` (the id of the event that created it, so a redelivered create is recognised).
"""

from __future__ import annotations

import re
from typing import Any

from common import validation as v
from common.errors import RESOURCE_ALREADY_EXISTS, MlflowError
from common.keys import decode_key, encode_key

# --- stages (mlflow.entities.model_registry.model_version_stages) -------------------------------

STAGE_NONE, STAGE_STAGING, STAGE_PRODUCTION, STAGE_ARCHIVED = "None", "Staging", "Production", "Archived"
ALL_STAGES = (STAGE_NONE, STAGE_STAGING, STAGE_PRODUCTION, STAGE_ARCHIVED)
ACTIVE_STAGES = (STAGE_STAGING, STAGE_PRODUCTION)
_CANONICAL = {s.lower(): s for s in ALL_STAGES}


def canonical_stage(stage: str) -> str:
    canonical = _CANONICAL.get(stage.lower())
    if canonical is None:
        raise MlflowError.invalid(f"Invalid Model Version stage: {stage}. Value must be one of {', '.join(ALL_STAGES)}.")
    return canonical


# --- prompts (mlflow.prompt.constants) -----------------------------------------------------------

IS_PROMPT_TAG_KEY = "mlflow.prompt.is_prompt"
PROMPT_TEXT_TAG_KEY = "mlflow.prompt.text"
PROMPT_SOURCE_PLACEHOLDERS = frozenset({"dummy-source", "prompt-template"})
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # set on a logged model registered as a version


def is_prompt(tags: dict[str, str]) -> bool:
    """Tags collapse by key, last value wins; only a true-valued tag makes a prompt."""
    return tags.get(IS_PROMPT_TAG_KEY, "false").lower() == "true"


def already_exists(name: str, existing_is_prompt: bool, new_is_prompt: bool) -> MlflowError:
    old = "Prompt" if existing_is_prompt else "Registered Model"
    new = "Prompt" if new_is_prompt else "Registered Model"
    if old != new:
        return MlflowError(
            f"Tried to create a {new.lower()} with name {name!r}, but the name is already taken by a "
            f"{old.lower()}. MLflow does not allow creating a model and a prompt with the same name.",
            RESOURCE_ALREADY_EXISTS)
    return MlflowError(f"{new} (name={name}) already exists.", RESOURCE_ALREADY_EXISTS)


# --- validation (mlflow.utils.validation) -------------------------------------------------------

MAX_TAG_KEY_LENGTH = 250
MAX_TAG_VALUE_LENGTH = 100_000
MAX_ALIAS_LENGTH = 255
_ALIAS_RE = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS_RE = re.compile(r"^[vV]\d+$")
LATEST_ALIAS = "latest"


def validate_model_name(name: str | None) -> str:
    if name is None or name.strip() == "":
        raise MlflowError.invalid(v.missing_value("name"))
    if "/" in name or ":" in name:
        raise MlflowError.invalid(f"Invalid model name '{name}'. Names cannot contain '/' or ':'.")
    if v.path_not_unique(name):
        raise MlflowError.invalid(v.invalid_value("name", name, v.bad_path_message(name)))
    return name


def validate_new_name(new_name: str | None) -> str:
    if new_name is None or str(new_name).strip() == "":
        raise MlflowError.invalid(v.missing_value("new_name"))
    return validate_model_name(new_name)


def validate_registered_model_tag(key: str | None, value: str | None) -> None:
    v.validate_tag_name(key)
    v.validate_length("key", MAX_TAG_KEY_LENGTH, key)
    v.validate_length("value", MAX_TAG_VALUE_LENGTH, value)


def validate_model_version_tag(key: str | None, value: str | None) -> None:
    v.validate_tag_name(key)
    if value is None:
        raise MlflowError.invalid("Tag value cannot be None")
    v.validate_length("key", MAX_TAG_KEY_LENGTH, key)
    if key == PROMPT_TEXT_TAG_KEY and len(value) > MAX_TAG_VALUE_LENGTH:
        raise MlflowError.invalid(f"Prompt text exceeds max length of {MAX_TAG_VALUE_LENGTH} characters.")
    v.validate_length("value", MAX_TAG_VALUE_LENGTH, value)


def validate_version(version: Any) -> int:
    try:
        return int(version)
    except (TypeError, ValueError):
        raise MlflowError.invalid(f"Parameter 'version' must be an integer, got '{version}'.") from None


def validate_alias(alias: str | None) -> str:
    if not alias:
        raise MlflowError.invalid("Registered model alias name cannot be empty.")
    if not _ALIAS_RE.match(alias):
        raise MlflowError.invalid(
            f"Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores (_), and dashes (-).")
    v.validate_length("Registered model alias name", MAX_ALIAS_LENGTH, alias)
    return alias


def validate_alias_not_reserved(alias: str) -> None:
    if alias.lower() == LATEST_ALIAS:
        raise MlflowError.invalid("'latest' alias name (case insensitive) is reserved.")
    if _VERSION_ALIAS_RE.match(alias):
        raise MlflowError.invalid(f"Version alias name '{alias}' is reserved.")


# --- messages -------------------------------------------------------------------------------------


def model_not_found(name: str) -> MlflowError:
    return MlflowError.not_found(f"Registered Model with name={name} not found")


def version_not_found(name: str, version: int | str) -> MlflowError:
    return MlflowError.not_found(f"Model Version (name={name}, version={version}) not found")


# --- documents ------------------------------------------------------------------------------------


def version_id(model_key: str, version: int) -> str:
    return f"{model_key}:{version}"


def new_registered_model_document(*, key: str, name: str, time: int, description: str | None,
                                  tags: list[tuple[str, str]]) -> dict[str, Any]:
    tag_map = {encode_key(k): val for k, val in tags}
    doc: dict[str, Any] = {"_id": key, "name": name, "creation_timestamp": time, "last_updated_timestamp": time,
                           "tags": tag_map, "aliases": {}, "next_version": 1,
                           "prompt": is_prompt({decode_key(k): val for k, val in tag_map.items()})}
    if description:
        doc["description"] = description
    return doc


def new_model_version_document(*, key: str, name: str, version: int, time: int, source: str,
                               storage_location: str, run_id: str | None, run_link: str | None,
                               description: str | None, model_id: str | None, tags: list[tuple[str, str]],
                               event_id: str) -> dict[str, Any]:
    tag_map = {encode_key(k): val for k, val in tags}
    doc: dict[str, Any] = {
        "_id": version_id(key, version), "rm": key, "name": name, "version": version,
        "creation_timestamp": time, "last_updated_timestamp": time, "current_stage": STAGE_NONE,
        "source": source, "storage_location": storage_location, "status": "READY", "tags": tag_map,
        "prompt": is_prompt({decode_key(k): val for k, val in tag_map.items()}), "event": event_id,
    }
    for field, value in (("run_id", run_id), ("run_link", run_link), ("description", description),
                         ("model_id", model_id)):
        if value:
            doc[field] = value
    return doc


def _kv(mapping: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"key": decode_key(k), "value": val} for k, val in (mapping or {}).items()]


def model_version(doc: dict[str, Any], aliases: list[str] | None = None) -> dict[str, Any]:
    """A ModelVersion as the reference server prints it (unset fields and empty lists omitted)."""
    out: dict[str, Any] = {
        "name": doc["name"], "version": str(doc["version"]),
        "creation_timestamp": doc["creation_timestamp"], "last_updated_timestamp": doc["last_updated_timestamp"],
    }
    # The SQL store hands the proto "" for these when unset, so the reference always prints them.
    out["description"] = doc.get("description") or ""
    if doc.get("user_id") is not None:
        out["user_id"] = doc["user_id"]
    out["current_stage"] = doc.get("current_stage", STAGE_NONE)
    out["source"] = doc.get("source", "")
    out["run_id"] = doc.get("run_id") or ""
    out["run_link"] = doc.get("run_link") or ""
    out["status"] = doc.get("status", "READY")
    if doc.get("status_message"):
        out["status_message"] = doc["status_message"]
    if doc.get("tags"):
        out["tags"] = _kv(doc["tags"])
    if aliases:
        out["aliases"] = aliases
    return out


def aliases_of(model_doc: dict[str, Any] | None, version: int) -> list[str]:
    return [alias for alias, ver in ((model_doc or {}).get("aliases") or {}).items() if ver == version]


def latest_versions(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The highest version of each stage, in stage order then version (as MLflow lists them)."""
    best: dict[str, dict[str, Any]] = {}
    for doc in versions:
        stage = doc.get("current_stage", STAGE_NONE)
        if stage not in best or doc["version"] > best[stage]["version"]:
            best[stage] = doc
    return sorted(best.values(), key=lambda d: d["version"])


def registered_model(doc: dict[str, Any], latest: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A RegisteredModel as the reference server prints it; `latest` are version documents."""
    out: dict[str, Any] = {"name": doc["name"], "creation_timestamp": doc["creation_timestamp"]}
    if doc.get("last_updated_timestamp"):
        out["last_updated_timestamp"] = doc["last_updated_timestamp"]
    if doc.get("description"):
        out["description"] = doc["description"]
    if latest:
        out["latest_versions"] = [model_version(d) for d in latest]
    if doc.get("tags"):
        out["tags"] = _kv(doc["tags"])
    if doc.get("aliases"):
        out["aliases"] = [{"alias": a, "version": str(ver)} for a, ver in doc["aliases"].items()]
    return out
