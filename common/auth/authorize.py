"""May this identity do what this request asks? Resolves the resource a rule names (runs,
logged models, artifacts and traces to their experiment), folds the caller's grants with the
default permission, filters search results, and keeps grants in step with creates and renames."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from common.artifacts import safe_relative_path
from common.auth.identity import Identity
from common.auth.permissions import LEVELS, allows
from common.auth.roles import RoleStore
from common.auth.rules import Rule
from common.auth.store import GRANTS, AuthStore
from common.errors import PERMISSION_DENIED, MlflowError

_MAX_CACHED = 100_000
# search rule param (the response's list field) -> (resource type, how to read an item's resource id)
_SEARCH_ITEMS: dict[str, tuple[str, Any]] = {
    "experiments": ("experiment", lambda item: item.get("experiment_id")),
    "runs": ("experiment", lambda item: (item.get("info") or {}).get("experiment_id")),
    "models": ("experiment", lambda item: (item.get("info") or {}).get("experiment_id")),
    "registered_models": ("registered_model", lambda item: item.get("name")),
    "model_versions": ("registered_model", lambda item: item.get("name")),
}


def denied(message: str = "Permission denied") -> MlflowError:
    return MlflowError(message, PERMISSION_DENIED)


def storage_type(resource_type: str) -> str:
    """Prompts are registered models in the registry, so their grants are too."""
    return "registered_model" if resource_type == "prompt" else resource_type


class Params:
    """A request's parameters: the JSON body's fields first, then the query string (as MLflow's
    `_get_request_param` reads them)."""

    def __init__(self, query: Any, body: dict[str, Any] | None, match: dict[str, str], headers: Any):
        self.query, self.body, self.match, self.headers = query, body or {}, match, headers

    def raw(self, name: str) -> Any:
        if name in self.body:
            return self.body[name]
        return self.query.get(name)

    def string(self, *names: str) -> str:
        for name in names:
            value = self.raw(name)
            if value is None:
                continue
            if not isinstance(value, str) or not value:
                raise MlflowError.invalid(f"Invalid value {msgspec.json.encode(value).decode()[:100]} "
                                          f"for parameter '{name}' supplied")
            return value
        raise MlflowError.invalid(f"Missing value for required parameter '{names[0]}'.")

    def strings(self, name: str) -> list[str]:
        value = self.body[name] if name in self.body else self.query.getall(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MlflowError.invalid(f"Invalid value for parameter '{name}' supplied")
        return value


class _BodyFields(msgspec.Struct):
    """The body fields rules read. Decoding into this skips every other field without building
    it, so a 1 MB log-batch costs a fast scan here, not a second full decode."""

    experiment_id: Any = msgspec.UNSET
    experiment_name: Any = msgspec.UNSET
    experiment_ids: Any = msgspec.UNSET
    run_id: Any = msgspec.UNSET
    run_uuid: Any = msgspec.UNSET
    run_ids: Any = msgspec.UNSET
    name: Any = msgspec.UNSET
    new_name: Any = msgspec.UNSET
    username: Any = msgspec.UNSET
    resource_type: Any = msgspec.UNSET
    resource_id: Any = msgspec.UNSET
    request_id: Any = msgspec.UNSET
    trace_id: Any = msgspec.UNSET
    trace_ids: Any = msgspec.UNSET
    trace: Any = msgspec.UNSET
    trace_info: Any = msgspec.UNSET
    locations: Any = msgspec.UNSET
    source: Any = msgspec.UNSET
    model_id: Any = msgspec.UNSET


_body_decoder = msgspec.json.Decoder(_BodyFields)


def decode_body_fields(raw: bytes) -> dict[str, Any] | None:
    try:
        if raw.lstrip()[:1] == b'"':  # legacy clients double-encode the body (common/requests.py)
            raw = msgspec.json.decode(raw, type=str).encode()
        fields = _body_decoder.decode(raw) if raw.strip() else None
    except (msgspec.DecodeError, RecursionError):
        return None  # not a JSON object: the handler reports the malformed body in its own words
    if fields is None:
        return None
    return {k: v for k, v in msgspec.structs.asdict(fields).items() if v is not msgspec.UNSET}


async def read_params(request: web.Request, rule: Rule) -> Params:
    body: dict[str, Any] | None = None
    # JSON bodies only (as MLflow's auth reads request.json): upload bodies (upload-artifact, the
    # artifact proxy, OTLP) stay unread here and stream to their handlers.
    if request.method in ("POST", "PATCH", "DELETE") and rule.kind not in ("artifact", "otlp") \
            and request.can_read_body and request.content_type == "application/json":
        body = decode_body_fields(await request.read())  # aiohttp keeps the bytes for the handler
    return Params(request.query, body, dict(request.match_info), request.headers)


Grants = dict[tuple[str, str], str]  # (resource type, resource id or "*") -> permission


class Authorizer:
    def __init__(self, store: AuthStore, db: AsyncDatabase, default_permission: str, ttl: float,
                 roles: RoleStore | None = None):
        self.store, self.db, self.default, self.ttl = store, db, default_permission, ttl
        self.roles = roles
        self._grants: dict[str, tuple[float, Grants, Grants]] = {}
        self._run_experiment: dict[str, str | None] = {}

    # --- permissions ---
    async def _both(self, username: str) -> tuple[Grants, Grants]:
        """(direct grants, best role grants) of a user, cached for `ttl` seconds."""
        hit = self._grants.get(username)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1], hit[2]
        direct = await self.store.grants_of(username)
        roles = await self.roles.grants_of(username) if self.roles is not None else {}
        if len(self._grants) >= 10_000:
            self._grants.clear()
        self._grants[username] = (time.monotonic() + self.ttl, direct, roles)
        return direct, roles

    async def grants(self, username: str) -> Grants:
        return (await self._both(username))[0]

    def forget(self, username: str | None = None) -> None:
        if username is None:
            self._grants.clear()
        else:
            self._grants.pop(username, None)

    async def permission(self, identity: Identity, resource_type: str, resource_id: str | None) -> str:
        if identity.is_admin:
            return "MANAGE"
        if resource_id is None:
            return self.default
        direct, roles = await self._both(identity.username)
        key = (storage_type(resource_type), resource_id)
        if key in direct:  # an explicit per-user decision wins
            return direct[key]
        # roles can only add to the default permission (MLflow folds it in as a floor)
        candidates = (roles.get(key), roles.get((key[0], "*")), self.default)
        return max((c for c in candidates if c is not None), key=lambda p: LEVELS.get(p, 0))

    async def may(self, identity: Identity, resource_type: str, resource_id: str | None, action: str) -> bool:
        return allows(await self.permission(identity, resource_type, resource_id), action)  # type: ignore[arg-type]

    async def reads_everything(self, identity: Identity, resource_type: str | None = None) -> bool:
        """No grant of the caller withholds reading (the default permission reads)."""
        if identity.is_admin:
            return True
        direct, roles = await self._both(identity.username)
        types = (resource_type,) if resource_type else ("experiment", "registered_model")
        if not allows(self.default, "read") and not all(allows(roles.get((t, "*"), "NO_PERMISSIONS"), "read")
                                                        for t in types):
            return False
        return all(allows(p, "read") for (t, _), p in direct.items() if t in types)

    # --- resources ---
    async def experiment_of_run(self, run_id: str) -> str | None:
        if run_id in self._run_experiment:
            return self._run_experiment[run_id]
        doc = await self.db["runs"].find_one({"_id": run_id}, {"experiment_id": 1})
        experiment_id = None if doc is None else str(doc.get("experiment_id"))
        if experiment_id is not None:  # runs never move; unknown ids are not remembered
            if len(self._run_experiment) >= _MAX_CACHED:
                self._run_experiment.clear()
            self._run_experiment[run_id] = experiment_id
        return experiment_id

    async def _experiment_of(self, collection: str, query: dict[str, Any]) -> str | None:
        doc = await self.db[collection].find_one(query, {"experiment_id": 1})
        return None if doc is None or doc.get("experiment_id") is None else str(doc["experiment_id"])

    async def check(self, identity: Identity, rule: Rule, params: Params) -> None:
        """Raise 403 (or 400 for a missing or malformed parameter) unless the rule is met."""
        if identity.is_admin or rule.kind in ("authenticated", "search"):
            return
        ok = await self._decide(identity, rule, params)
        if not ok:
            raise denied()

    async def _decide(self, identity: Identity, rule: Rule, params: Params) -> bool:
        kind, action = rule.kind, rule.action
        if kind == "admin":
            return False
        if kind == "self_or_admin":
            return params.string("username") == identity.username
        if kind == "global_read":
            return await self.reads_everything(identity)
        if kind == "experiment":
            return await self.may(identity, "experiment", params.string("experiment_id"), action)
        if kind == "experiment_name":
            name = params.string("experiment_name")
            return await self.may(identity, "experiment", await self._experiment_id_by_name(name), action)
        if kind == "experiments":
            ids = params.strings("experiment_ids") if params.raw("experiment_ids") is not None else []
            for location in params.body.get("locations") or []:
                if isinstance(location, dict):
                    exp = (location.get("mlflow_experiment") or {}).get("experiment_id")
                    ids.append(exp if isinstance(exp, str) else "")
            return all([await self.may(identity, "experiment", eid, action) for eid in ids])
        if kind == "run":
            run_id = params.string("run_id", "run_uuid")
            return await self.may(identity, "experiment", await self.experiment_of_run(run_id), action)
        if kind == "runs":
            run_ids = params.strings("run_ids")
            return all([await self.may(identity, "experiment", await self.experiment_of_run(r), action)
                        for r in run_ids[:1000]])
        if kind == "logged_model":
            model_id = next(iter(params.match.values()), "")
            return await self.may(identity, "experiment",
                                  await self._experiment_of("logged_models", {"_id": model_id}), action)
        if kind == "artifact":
            # the same normalisation the artifact handlers apply, so "./7/..." is experiment 7
            path = safe_relative_path(params.match.get("path", params.query.get("path") or ""))
            if not path:  # the root lists every experiment's folder
                return action == "read" and await self.reads_everything(identity, "experiment")
            return await self.may(identity, "experiment", path.split("/", 1)[0], action)
        if kind == "model_version_create":
            # MLflow's _can_read_model_version_source: registering a version must not become a way
            # to read artifacts of a run or model the caller cannot read
            if not await self.may(identity, "registered_model", params.string("name"), action):
                return False
            return await self._may_read_source(identity, params)
        if kind == "registered_model":
            return await self.may(identity, "registered_model", params.string("name"), action)
        if kind == "manage_resource":
            from common.auth.permissions import check_resource_type

            resource_type = check_resource_type(params.raw("resource_type"))
            return await self.may(identity, resource_type, params.string("resource_id"), "manage")
        if kind == "trace":
            trace_id = params.match.get("trace_id") or params.match.get("request_id") \
                or next(iter(params.match.values()), None) or params.string(rule.param or "request_id")
            return await self._may_trace(identity, trace_id, action)
        if kind in ("traces", "link_traces"):
            raw = params.raw("trace_ids")
            trace_ids = [raw] if isinstance(raw, str) else params.strings("trace_ids")
            if kind == "link_traces":
                run = await self.experiment_of_run(params.string("run_id"))
                if not await self.may(identity, "experiment", run, action):
                    return False
            return all([await self._may_trace(identity, t, action) for t in trace_ids[:1000]])
        if kind == "trace_start":
            info = params.body.get("trace", {}).get("trace_info") if isinstance(params.body.get("trace"), dict) \
                else params.body.get("trace_info", params.body)
            exp = (((info or {}).get("trace_location") or {}).get("mlflow_experiment") or {}).get("experiment_id") \
                if isinstance(info, dict) else None
            exp = exp or (info.get("experiment_id") if isinstance(info, dict) else None)
            return isinstance(exp, str) and await self.may(identity, "experiment", exp, action)
        if kind == "otlp":  # spans for an experiment (header), optionally linked to a run (header)
            exp, run = params.headers.get("x-mlflow-experiment-id"), params.headers.get("x-mlflow-run-id")
            if run and not await self.may(identity, "experiment", await self.experiment_of_run(run), action):
                return False
            return bool(exp) and await self.may(identity, "experiment", exp, action)
        return False  # a kind this module does not know: fail closed

    async def _may_read_source(self, identity: Identity, params: Params) -> bool:
        experiments: list[str | None] = []
        run_id, source, model_id = params.raw("run_id"), params.raw("source"), params.raw("model_id")
        for value in (run_id, source, model_id):
            if value is not None and not isinstance(value, str):
                return False
        if run_id:
            experiments.append(await self.experiment_of_run(run_id))
        if model_id:
            experiments.append(await self._experiment_of("logged_models", {"_id": model_id}))
        if source:
            if source.startswith("runs:/"):
                experiments.append(await self.experiment_of_run(source[len("runs:/"):].lstrip("/").split("/", 1)[0]))
            elif source.startswith("models:/m-"):
                model = source[len("models:/"):].split("/", 1)[0]
                experiments.append(await self._experiment_of("logged_models", {"_id": model}))
            elif source.startswith("mlflow-artifacts:"):
                path = safe_relative_path(source[len("mlflow-artifacts:"):].lstrip("/"))
                experiments.append(path.split("/", 1)[0] if path else None)
        return all([await self.may(identity, "experiment", e, "read") for e in experiments])

    async def _may_trace(self, identity: Identity, trace_id: str, action: str) -> bool:
        """Traces follow their experiment; an unknown trace is denied (fail closed)."""
        if not isinstance(trace_id, str):
            return False
        experiment_id = await self._experiment_of("traces", {"_id": trace_id})
        return experiment_id is not None and await self.may(identity, "experiment", experiment_id, action)

    async def _experiment_id_by_name(self, name: str) -> str | None:
        doc = await self.db["experiments"].find_one({"name": name}, {"_id": 1})
        return None if doc is None else str(doc["_id"])

    # --- after the handler ---
    async def filter_search(self, identity: Identity, rule: Rule, response: web.StreamResponse) -> web.StreamResponse:
        """Drop search results the caller may not read (MLflow's filter_search_* after-request hooks)."""
        field = rule.param or ""
        resource_type, resource_of = _SEARCH_ITEMS.get(field, ("experiment", lambda _: None))
        if await self.reads_everything(identity, resource_type) or not isinstance(response, web.Response) \
                or response.status != 200 or response.body is None:
            return response
        payload = msgspec.json.decode(bytes(response.body))
        kept = [item for item in payload.get(field) or []
                if isinstance(item, dict) and await self.may(identity, resource_type, resource_of(item), "read")]
        if kept or field in payload:
            payload[field] = kept
        response.body = msgspec.json.encode(payload)
        return response

    async def after(self, identity: Identity, rule: Rule, params: Params, response: web.StreamResponse) -> None:
        """Creators get MANAGE; a renamed or deleted model's grants follow it."""
        if response.status != 200 or rule.hook is None or not isinstance(response, web.Response) \
                or response.body is None:
            return
        payload = msgspec.json.decode(bytes(response.body)) if response.body else {}
        if rule.hook == "grant_experiment" and isinstance(payload.get("experiment_id"), str):
            await self.store.grant(identity.username, "experiment", payload["experiment_id"], "MANAGE")
        elif rule.hook == "grant_registered_model":
            name = (payload.get("registered_model") or {}).get("name")
            if isinstance(name, str):
                await self.store.grant(identity.username, "registered_model", name, "MANAGE")
        elif rule.hook == "rename_registered_model":
            old, new = params.raw("name"), params.raw("new_name")
            if isinstance(old, str) and isinstance(new, str):
                await self.store.rename_resource("registered_model", old, new)
                self.forget()
        elif rule.hook == "forget_registered_model":
            name = params.raw("name")
            if isinstance(name, str):
                await self.db[GRANTS].delete_many({"resource_type": "registered_model", "resource_id": name})
                self.forget()
        self.forget(identity.username)
