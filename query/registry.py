"""Model registry reads: registered models and versions (get, search, latest versions, aliases,
download URIs, version artifacts). Prompts are registered models with prompt tags: searches leave
them out unless the filter asks for `tags.mlflow.prompt.is_prompt = 'true'`, as MLflow does.

Search grammar and messages follow `SearchModelUtils` / `SearchModelVersionUtils` and the SQL
store; the parse reuses the scanner of `query/filters.py`, so no text reaches MongoDB except as a
typed value. Paging uses the same keyset tokens as runs/search.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from common import registry as reg
from common import registry_reads as reads
from common.artifacts import ArtifactStore, join_under, safe_relative_path
from common.errors import MlflowError
from common.keys import encode_key
from common.mongo import MODEL_VERSIONS, REGISTERED_MODELS
from common.requests import decode_message
from common.web import json_response
from query import requests as rq
from query.artifacts import SCHEME, run_artifact_root, stream_file
from query.filters import (
    COMPARISON_OPS,
    _Comparison,
    _Literal,
    _parse_comparisons,
    _parse_order_by,
    _set_repr,
    _strip_quotes,
    _trim_backticks,
    invalid,
)
from query.paging import decode_token, fingerprint
from query.search import SearchPlan, fetch_page
from query.translate import SortKey, SortPlan, numeric_condition, string_condition

# --- request messages -----------------------------------------------------------------------------


class GetRegisteredModel(msgspec.Struct):
    name: str


class SearchRegisteredModels(msgspec.Struct):
    filter: str | None = None
    max_results: rq.Int64 | None = None
    order_by: list[str] = []
    page_token: str | None = None


class GetLatestVersions(msgspec.Struct):
    name: str
    stages: list[str] = []


class GetModelVersion(msgspec.Struct):
    name: str
    version: str


class SearchModelVersions(SearchRegisteredModels):
    pass


class GetByAlias(msgspec.Struct):
    name: str
    alias: str


def _at_most(limit: int) -> Callable[[Any], bool]:
    return lambda x: int(x) <= limit


R, S, I, A = rq.R, rq.S, rq.I, rq.A
MAX_MODELS_PER_PAGE, MAX_VERSIONS_PER_PAGE = 1000, 200_000
DEFAULT_MODELS_PER_PAGE, DEFAULT_VERSIONS_PER_PAGE = 100, 200_000

SCHEMAS: dict[type, Any] = {
    GetRegisteredModel: {"name": (S, R)},
    SearchRegisteredModels: {"filter": (S,), "max_results": (I, _at_most(MAX_MODELS_PER_PAGE)),
                             "order_by": (A, rq._all_strings), "page_token": (S,)},
    GetLatestVersions: {"name": (S, R), "stages": (A, rq._all_strings)},
    GetModelVersion: {"name": (S, R), "version": (S, R)},
    SearchModelVersions: {"filter": (S,), "max_results": (I, _at_most(MAX_VERSIONS_PER_PAGE)),
                          "order_by": (A, rq._all_strings), "page_token": (S,)},
    GetByAlias: {"name": (S, R), "alias": (S, R)},
}

# --- filters (SearchModelUtils / SearchModelVersionUtils) -----------------------------------------

MODEL_ATTRIBUTES = frozenset({"name"})
VERSION_ATTRIBUTES = frozenset({"name", "version_number", "run_id", "source_path"})
VERSION_NUMERIC = frozenset({"version_number", "creation_timestamp", "last_updated_timestamp"})
_STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_TAG_OPS = ("=", "!=", "LIKE", "ILIKE")
_VERSION_FIELDS = {"name": "name", "run_id": "run_id", "source_path": "source", "version_number": "version"}


def _identifier(raw: str, valid: frozenset[str]) -> tuple[str, str]:
    if "." in raw:
        entity, key = raw.split(".", 1)
        if entity not in ("attribute", "tag", "tags"):
            raise invalid(f"Invalid entity type '{entity}'. Valid entity types are ('attribute', 'tag', 'tags')")
        kind = "attribute" if entity == "attribute" else "tag"
    else:
        kind, key = "attribute", raw
    if kind == "attribute" and key not in valid:
        raise invalid(f"Invalid attribute key '{key}' specified. Valid keys are '{_set_repr(valid)}'")
    return kind, _trim_backticks(_strip_quotes(key))


def _value(kind: str, key: str, lit: _Literal | None, numeric: frozenset[str], lists: frozenset[str]) -> Any:
    if lit is None:
        raise invalid(f"Invalid comparator for {kind}")
    if kind == "tag":
        if lit.kind != "string":
            raise invalid(f"Expected a quoted string value for tag (e.g. 'my-value'). Got value {lit.text}")
        return str(lit.value)
    if lit.kind == "string":
        return str(lit.value)
    if lit.kind == "list":
        if key not in lists:
            raise invalid(f"Only {sorted(lists)} attributes support comparison with a list of quoted string values.")
        return tuple(lit.value)
    if lit.kind == "number" and numeric:
        if key not in numeric:
            raise invalid(f"Only the '{_set_repr(numeric)}' attributes support comparison with numeric values.")
        text = str(lit.value)
        return int(text) if text.lstrip("-").isdigit() else float(text)
    raise invalid("Expected a quoted string value or a list of quoted string values for attributes. "
                  f"Got value {lit.text}")


_TOKEN_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|[\w.]+|[<>=!~]+|[(),]")


def _comparisons(text: str) -> list[_Comparison]:
    """The filter's comparisons; a filter that is not `comparison AND ...` gets the reference's
    message, which lists the clauses it could not read (the OR, or the whole text)."""
    try:
        return _parse_comparisons(text)
    except MlflowError:
        tokens = _TOKEN_RE.findall(text)
        bad = [t for t in tokens if t.upper() == "OR"] or tokens
        raise invalid(f"Invalid clause(s) in filter string: {', '.join(bad)}") from None


def _tag_condition(clauses: list[tuple[str, str, Any]], querying_prompts: bool) -> list[dict[str, Any]]:
    out = []
    for key, comparator, value in clauses:
        if key == reg.IS_PROMPT_TAG_KEY and not querying_prompts:
            continue  # MLflow drops it and excludes prompts instead
        if comparator not in _TAG_OPS:
            raise invalid(f"Invalid comparator for tag: {comparator}")
        out.append({f"tags.{encode_key(key)}": string_condition(comparator, value)})
    return out


def _querying_prompts(tags: list[tuple[str, str, Any]]) -> bool:
    for key, comparator, value in tags:
        if key == reg.IS_PROMPT_TAG_KEY:
            lowered = str(value).lower()
            return (comparator == "=" and lowered == "true") or (comparator == "!=" and lowered == "false")
    return False


def model_filter(text: str | None) -> dict[str, Any]:
    """`registered-models/search` filter -> a MongoDB query (prompts excluded unless asked for)."""
    conditions: list[dict[str, Any]] = []
    tags: list[tuple[str, str, Any]] = []
    for comp in _comparisons(text or ""):
        kind, key = _identifier(comp.identifier, MODEL_ATTRIBUTES)
        value = _value(kind, key, comp.value, frozenset(), frozenset({"name"}))
        if kind == "tag":
            tags.append((key, comp.comparator, value))
            continue
        if comp.comparator not in _STRING_OPS or (comp.comparator in ("IN", "NOT IN")) != isinstance(value, tuple):
            raise invalid(f"Invalid comparator for attribute: {comp.comparator}")
        conditions.append({"name": string_condition(comp.comparator, value)})
    prompts = _querying_prompts(tags)
    conditions += _tag_condition(tags, prompts)
    if not prompts:
        conditions.append({"prompt": {"$ne": True}})
    return {"$and": conditions}


def _version_clause(comp: _Comparison) -> tuple[str, str, Any] | dict[str, Any]:
    kind, key = _identifier(comp.identifier, VERSION_ATTRIBUTES)
    value = _value(kind, key, comp.value, VERSION_NUMERIC, frozenset({"name", "run_id"}))
    if kind == "tag":
        return key, comp.comparator, value
    field = _VERSION_FIELDS[key]
    if key in VERSION_NUMERIC:
        if comp.comparator not in COMPARISON_OPS:
            raise invalid(f"Invalid comparator for attribute {key}: {comp.comparator}")
        if isinstance(value, float) or isinstance(value, tuple):
            raise invalid(f"Invalid value for numeric attribute '{key}': {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise invalid(f"Invalid value for numeric attribute '{key}': {value!r}") from None
        return {field: numeric_condition(comp.comparator, number)}
    if comp.comparator not in _STRING_OPS or (comp.comparator in ("IN", "NOT IN") and key not in ("run_id", "name")):
        raise invalid(f"Invalid comparator for attribute: {comp.comparator}")
    if (comp.comparator in ("IN", "NOT IN")) != isinstance(value, tuple):
        raise invalid(f"Invalid comparator for attribute: {comp.comparator}")
    return {field: string_condition(comp.comparator, value)}


def version_filter(text: str | None) -> dict[str, Any]:
    """`model-versions/search` filter -> a MongoDB query (prompt versions excluded unless asked for)."""
    conditions: list[dict[str, Any]] = []
    tags: list[tuple[str, str, Any]] = []
    for comp in _comparisons(text or ""):
        clause = _version_clause(comp)
        if isinstance(clause, tuple):
            tags.append(clause)
        else:
            conditions.append(clause)
    prompts = _querying_prompts(tags)
    conditions += _tag_condition(tags, prompts)
    if not prompts:
        conditions.append({"prompt": {"$ne": True}})
    return {"$and": conditions}


# --- order_by ------------------------------------------------------------------------------------

_MODEL_ORDER = {"name": "name", "timestamp": "last_updated_timestamp", "last_updated_timestamp": "last_updated_timestamp"}
_MODEL_ORDER_RECOMMENDED = frozenset({"name", "timestamp"})  # what MLflow's message lists
_VERSION_ORDER = {"name": "name", "version_number": "version", "creation_timestamp": "creation_timestamp",
                  "last_updated_timestamp": "last_updated_timestamp"}


def _sort_plan(order_by: list[str], fields: dict[str, str], defaults: list[tuple[str, bool]],
               listed: frozenset[str] | None = None) -> SortPlan:
    keys: list[SortKey] = []
    for text in order_by:
        identifier, ascending = _parse_order_by(text)
        if listed is not None and identifier not in fields:
            raise invalid(f"Invalid order by key '{identifier}' specified. Valid keys are '{_set_repr(listed)}'")
        kind, key = _identifier(identifier, frozenset(fields))
        if kind != "attribute":
            raise invalid(f"Invalid order_by entity: {kind}")
        field = fields[key]
        if any(k.field == field for k in keys):
            raise invalid(f"`order_by` contains duplicate fields: {order_by}")
        keys.append(SortKey(field, ascending, nullable=False))
    for field, ascending in defaults:
        if not any(k.field == field for k in keys):
            keys.append(SortKey(field, ascending, nullable=False))
    keys.append(SortKey("_id", True, nullable=False))  # a unique last key makes the cursor exact
    return SortPlan({}, keys)


def _page_size(value: int | None, default: int, limit: int) -> int:
    if value is None:
        return default
    if value < 1:
        raise MlflowError.invalid(f"Invalid value for max_results. It must be a positive integer, but got {value}")
    if value > limit:
        raise MlflowError.invalid("Invalid value for request parameter max_results. It must be at most "
                                  f"{limit}, but got value {value}")
    return value


def plan_model_search(req: SearchRegisteredModels) -> SearchPlan:
    limit = _page_size(req.max_results, DEFAULT_MODELS_PER_PAGE, MAX_MODELS_PER_PAGE)
    match = model_filter(req.filter)
    sort = _sort_plan(req.order_by, _MODEL_ORDER, [("name", True)], _MODEL_ORDER_RECOMMENDED)
    search = fingerprint("registered_models", req.filter or "", req.order_by)
    return SearchPlan(match, sort, limit, search, decode_token(req.page_token, search, len(sort.keys)))


def plan_version_search(req: SearchModelVersions) -> SearchPlan:
    limit = _page_size(req.max_results, DEFAULT_VERSIONS_PER_PAGE, MAX_VERSIONS_PER_PAGE)
    match = version_filter(req.filter)
    order_by = req.order_by or ["last_updated_timestamp DESC", "name ASC", "version_number DESC"]
    sort = _sort_plan(order_by, _VERSION_ORDER, [("name", True), ("version", False)])
    search = fingerprint("model_versions", req.filter or "", order_by)
    return SearchPlan(match, sort, limit, search, decode_token(req.page_token, search, len(sort.keys)))


# --- reads ---------------------------------------------------------------------------------------


async def search_models(db: AsyncDatabase, req: SearchRegisteredModels) -> dict[str, Any]:
    rows, token = await fetch_page(db[REGISTERED_MODELS], plan_model_search(req))
    versions = await reads.versions_of(db, [r["_id"] for r in rows])
    out: dict[str, Any] = {}
    if rows:
        out["registered_models"] = [reg.registered_model(r, reg.latest_versions(versions[r["_id"]])) for r in rows]
    if token:
        out["next_page_token"] = token
    return out


async def search_versions(db: AsyncDatabase, req: SearchModelVersions) -> dict[str, Any]:
    rows, token = await fetch_page(db[MODEL_VERSIONS], plan_version_search(req))
    out: dict[str, Any] = {}
    if rows:  # the reference leaves aliases out of search results (get-model-version has them)
        out["model_versions"] = [reg.model_version(r) for r in rows]
    if token:
        out["next_page_token"] = token
    return out


async def latest_versions(db: AsyncDatabase, req: GetLatestVersions) -> dict[str, Any]:
    doc = await reads.model(db, req.name)
    stages = {reg.canonical_stage(s) for s in req.stages} or set(reg.ALL_STAGES)
    versions = (await reads.versions_of(db, [doc["_id"]]))[doc["_id"]]
    chosen = [d for d in reg.latest_versions(versions) if d.get("current_stage") in stages]
    return {"model_versions": [reg.model_version(d, reg.aliases_of(doc, d["version"])) for d in chosen]} if chosen else {}


async def version_by_alias(db: AsyncDatabase, req: GetByAlias) -> dict[str, Any]:
    reg.validate_model_name(req.name)
    reg.validate_alias(req.alias)
    doc = await reads.model(db, req.name)
    if req.alias.lower() == reg.LATEST_ALIAS:
        versions = (await reads.versions_of(db, [doc["_id"]]))[doc["_id"]]
        if not versions:
            raise MlflowError.not_found(f"Latest version not found for model {req.name}.")
        number = max(d["version"] for d in versions)
    else:
        number = (doc.get("aliases") or {}).get(req.alias)
        if number is None:
            raise MlflowError.invalid(f"Registered model alias {req.alias} not found.")
    return {"model_version": await reads.rendered_version(db, req.name, number)}


async def download_uri(db: AsyncDatabase, req: GetModelVersion) -> dict[str, Any]:
    _, vdoc = await reads.version(db, req.name, req.version)
    return {"artifact_uri": vdoc.get("storage_location") or vdoc.get("source", "")}


# --- routes --------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def registry_routes(db: AsyncDatabase) -> list[tuple[str, str, Handler]]:
    """(method, path under the MLflow prefix, handler) for every registry read."""

    def endpoint(kind: type, call: Callable[[Any], Awaitable[dict[str, Any]]]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            if request.method == "GET" and request.query:
                body = rq.query_params(kind, request.query)
            else:
                body = rq.parse_json_body(await request.read())
            return json_response(await call(decode_message(body, kind, SCHEMAS[kind])))
        return handler

    get_model = endpoint(GetRegisteredModel, lambda m: _get_model(db, m.name))
    latest = endpoint(GetLatestVersions, lambda m: latest_versions(db, m))
    return [
        ("GET", "/registered-models/get", get_model),
        ("GET", "/registered-models/search", endpoint(SearchRegisteredModels, lambda m: search_models(db, m))),
        ("GET", "/registered-models/get-latest-versions", latest),
        ("POST", "/registered-models/get-latest-versions", latest),
        ("GET", "/registered-models/alias", endpoint(GetByAlias, lambda m: version_by_alias(db, m))),
        ("GET", "/model-versions/get", endpoint(
            GetModelVersion, lambda m: _rendered_version(db, m))),
        ("GET", "/model-versions/search", endpoint(SearchModelVersions, lambda m: search_versions(db, m))),
        ("GET", "/model-versions/get-download-uri", endpoint(GetModelVersion, lambda m: download_uri(db, m))),
    ]


async def version_artifact(request: web.Request, db: AsyncDatabase, store: ArtifactStore) -> web.StreamResponse:
    """`model-versions/get-artifact`: a file of a version whose files this server stores
    (under the logged model's or the run's artifact root; a `runs:/<run>/<path>` source is
    resolved through the run, as MLflow's artifact repository does)."""
    path = safe_relative_path(request.query.get("path", ""))
    uri = (await download_uri(db, GetModelVersion(request.query.get("name", ""),
                                                  request.query.get("version", ""))))["artifact_uri"]
    if uri.startswith("runs:/"):
        run_id, _, sub = uri[len("runs:/"):].partition("/")
        run_uri, _ = await run_artifact_root(db, run_id)
        uri = f"{run_uri.rstrip('/')}/{safe_relative_path(sub)}" if sub else run_uri
    if not uri.startswith(SCHEME):
        raise MlflowError.invalid(f"The model version's artifacts are not served by this server ({uri}).")
    return await stream_file(request, store, join_under(safe_relative_path(uri[len(SCHEME):].lstrip("/")), path))


async def _get_model(db: AsyncDatabase, name: str) -> dict[str, Any]:
    return {"registered_model": await reads.rendered_model(db, await reads.model(db, name))}


async def _rendered_version(db: AsyncDatabase, req: GetModelVersion) -> dict[str, Any]:
    return {"model_version": await reads.rendered_version(db, req.name, req.version)}
