"""What each route requires: MLflow's validator map (``BEFORE_REQUEST_HANDLERS`` and the
Flask-route, logged-model and artifact-proxy tables of ``mlflow/server/auth/__init__.py``),
restated per Genesis-Flow route.

A rule names the resource a request touches and the action it performs on it. Runs, logged
models, artifacts and traces follow their experiment; model versions follow their registered
model. A route that matches no rule is refused to everyone but admins (fail closed); `PUBLIC`
paths need no credentials at all.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from common.auth.permissions import Action


class Rule(NamedTuple):
    kind: str  # how to find the resource (see authorize.py); "search" rules filter their response
    action: Action = "read"
    param: str | None = None  # request parameter naming the resource, when not the kind's default
    hook: str | None = None  # after a successful response: grant the creator, follow a rename...


PUBLIC_PATHS = frozenset({"/health", "/ready", "/metrics", "/version", "/", "/favicon.ico",
                          "/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info"})
PUBLIC_PREFIXES = ("/static-files/", "/static/")

_API = re.compile(r"^/(?:ajax-)?api/[23]\.0/mlflow(?=/)")
_ARTIFACTS = re.compile(r"^/(?:ajax-)?api/2\.0/mlflow-artifacts(?=/|$)")
_TEMPLATE = re.compile(r"\{[^}]*\}")

R, U, D, M = "read", "update", "delete", "manage"

# (method, path below /api/2.0/mlflow, /api/3.0/mlflow and their /ajax-api twins) -> rule
MLFLOW: dict[tuple[str, str], Rule] = {
    # experiments
    ("POST", "/experiments/create"): Rule("authenticated", hook="grant_experiment"),
    ("GET", "/experiments/get"): Rule("experiment", R),
    ("GET", "/experiments/get-by-name"): Rule("experiment_name", R),
    ("POST", "/experiments/delete"): Rule("experiment", D),
    ("POST", "/experiments/restore"): Rule("experiment", D),
    ("POST", "/experiments/update"): Rule("experiment", U),
    ("POST", "/experiments/set-experiment-tag"): Rule("experiment", U),
    ("POST", "/experiments/delete-experiment-tag"): Rule("experiment", U),
    ("GET", "/experiments/search"): Rule("search", param="experiments"),
    ("POST", "/experiments/search"): Rule("search", param="experiments"),
    ("POST", "/experiments/search-datasets"): Rule("experiments", R),
    # runs
    ("POST", "/runs/create"): Rule("experiment", U),
    ("GET", "/runs/get"): Rule("run", R),
    ("POST", "/runs/delete"): Rule("run", D),
    ("POST", "/runs/restore"): Rule("run", D),
    **{("POST", f"/runs/{name}"): Rule("run", U) for name in (
        "update", "log-metric", "log-batch", "log-inputs", "log-parameter", "set-tag", "delete-tag", "outputs",
        "log-model")},
    ("GET", "/runs/search"): Rule("search", param="runs"),
    ("POST", "/runs/search"): Rule("search", param="runs"),
    ("GET", "/metrics/get-history"): Rule("run", R),
    ("GET", "/metrics/get-history-bulk"): Rule("runs", R),
    ("GET", "/metrics/get-history-bulk-interval"): Rule("runs", R),
    ("GET", "/metrics/system"): Rule("authenticated"),  # pipeline health, no tenant data
    ("POST", "/runs/create-promptlab-run"): Rule("experiment", U),
    ("GET", "/artifacts/list"): Rule("run", R),
    ("GET", "/get-artifact"): Rule("run", R),
    ("POST", "/upload-artifact"): Rule("run", U),
    # logged models (MLflow 3)
    ("POST", "/logged-models"): Rule("experiment", U),
    ("POST", "/logged-models/search"): Rule("search", param="models"),
    ("GET", "/logged-models/{}"): Rule("logged_model", R),
    ("PATCH", "/logged-models/{}"): Rule("logged_model", U),
    ("DELETE", "/logged-models/{}"): Rule("logged_model", D),
    ("GET", "/logged-models/{}/artifacts/directories"): Rule("logged_model", R),
    ("GET", "/logged-models/{}/artifacts/files"): Rule("logged_model", R),
    ("POST", "/logged-models/{}/params"): Rule("logged_model", U),
    ("PATCH", "/logged-models/{}/tags"): Rule("logged_model", U),
    ("DELETE", "/logged-models/{}/tags/{}"): Rule("logged_model", D),
    # model registry
    ("POST", "/registered-models/create"): Rule("authenticated", hook="grant_registered_model"),
    ("GET", "/registered-models/get"): Rule("registered_model", R),
    ("PATCH", "/registered-models/update"): Rule("registered_model", U),
    ("POST", "/registered-models/rename"): Rule("registered_model", U, hook="rename_registered_model"),
    ("DELETE", "/registered-models/delete"): Rule("registered_model", D, hook="forget_registered_model"),
    ("POST", "/registered-models/set-tag"): Rule("registered_model", U),
    ("DELETE", "/registered-models/delete-tag"): Rule("registered_model", U),
    ("GET", "/registered-models/get-latest-versions"): Rule("registered_model", R),
    ("POST", "/registered-models/get-latest-versions"): Rule("registered_model", R),
    ("GET", "/registered-models/alias"): Rule("registered_model", R),
    ("POST", "/registered-models/alias"): Rule("registered_model", U),
    ("DELETE", "/registered-models/alias"): Rule("registered_model", D),
    ("GET", "/registered-models/search"): Rule("search", param="registered_models"),
    ("POST", "/model-versions/create"): Rule("model_version_create", U),  # + read of its source
    ("GET", "/model-versions/get"): Rule("registered_model", R),
    ("GET", "/model-versions/get-download-uri"): Rule("registered_model", R),
    ("PATCH", "/model-versions/update"): Rule("registered_model", U),
    ("POST", "/model-versions/transition-stage"): Rule("registered_model", U),
    ("POST", "/model-versions/set-tag"): Rule("registered_model", U),
    ("DELETE", "/model-versions/delete"): Rule("registered_model", D),
    ("DELETE", "/model-versions/delete-tag"): Rule("registered_model", D),
    ("GET", "/model-versions/search"): Rule("search", param="model_versions"),
    # traces (MLflow 3): by experiment where the request names it; by trace id otherwise
    ("POST", "/traces"): Rule("trace_start", U),
    ("POST", "/traces/search"): Rule("experiments", R),
    ("GET", "/traces/search"): Rule("experiments", R),
    ("POST", "/traces/metrics"): Rule("experiments", R),  # QueryTraceMetrics
    ("GET", "/get-trace-artifact"): Rule("trace", R, param="request_id"),
    ("GET", "/traces/get"): Rule("trace", R, param="trace_id"),
    ("GET", "/traces/batchGet"): Rule("traces", R),
    ("GET", "/traces/batchGetInfos"): Rule("traces", R),
    ("POST", "/traces/batchGetInfos"): Rule("traces", R),
    ("GET", "/traces"): Rule("experiments", R),  # 2.x SearchTraces
    ("GET", "/traces/{}"): Rule("trace", R),
    ("PATCH", "/traces/{}"): Rule("trace", U),  # 2.x EndTrace
    ("GET", "/traces/{}/info"): Rule("trace", R),
    ("PATCH", "/traces/{}/tags"): Rule("trace", U),
    ("DELETE", "/traces/{}/tags"): Rule("trace", U),
    ("GET", "/traces/{}/assessments/{}"): Rule("trace", R),
    ("POST", "/traces/{}/assessments"): Rule("trace", U),
    ("PATCH", "/traces/{}/assessments/{}"): Rule("trace", U),
    ("DELETE", "/traces/{}/assessments/{}"): Rule("trace", D),
    ("POST", "/traces/link-to-run"): Rule("link_traces", U),
    ("POST", "/traces/link-prompts"): Rule("trace", U, param="trace_id"),  # LinkPromptsToTrace
    ("POST", "/traces/delete-traces"): Rule("experiment", D),
    # UI helpers without tenant data
    ("GET", "/gateway-proxy"): Rule("authenticated"),
    ("POST", "/gateway-proxy"): Rule("authenticated"),
    ("GET", "/ui-telemetry"): Rule("authenticated"),
    ("POST", "/ui-telemetry"): Rule("authenticated"),
    ("GET", "/assistant/config"): Rule("authenticated"),
    ("GET", "/assistant/providers"): Rule("authenticated"),
    # the basic-auth app's own API (common/auth/api.py)
    ("GET", "/users/current"): Rule("authenticated"),
    ("GET", "/users/current/permissions"): Rule("authenticated"),
    ("GET", "/users/get"): Rule("self_or_admin"),
    ("GET", "/users/list"): Rule("admin"),
    ("POST", "/users/create"): Rule("admin"),
    ("PATCH", "/users/update-password"): Rule("self_or_admin"),
    ("PATCH", "/users/update-admin"): Rule("admin"),
    ("DELETE", "/users/delete"): Rule("admin"),
    ("GET", "/users/permissions/list"): Rule("self_or_admin"),
    ("GET", "/users/permissions/get"): Rule("self_or_admin"),
    ("POST", "/users/permissions/grant"): Rule("manage_resource", M),
    ("POST", "/users/permissions/revoke"): Rule("manage_resource", M),
    **{(method, f"/roles/{name}"): Rule("admin") for method, name in (
        ("POST", "create"), ("GET", "get"), ("GET", "list"), ("PATCH", "update"), ("DELETE", "delete"),
        ("POST", "permissions/add"), ("DELETE", "permissions/remove"), ("GET", "permissions/list"),
        ("PATCH", "permissions/update"), ("POST", "assign"), ("DELETE", "unassign"), ("GET", "users/list"))},
    ("GET", "/users/roles/list"): Rule("self_or_admin"),
    **{(method, f"/experiments/permissions/{name}"): Rule("experiment", M)
       for method, name in (("POST", "create"), ("GET", "get"), ("PATCH", "update"), ("DELETE", "delete"))},
    **{(method, f"/registered-models/permissions/{name}"): Rule("registered_model", M)
       for method, name in (("POST", "create"), ("GET", "get"), ("PATCH", "update"), ("DELETE", "delete"))},
}

# The artifact proxy (below /api/2.0/mlflow-artifacts): paths start with the experiment id.
ARTIFACTS: dict[tuple[str, str], Rule] = {
    ("GET", "/artifacts"): Rule("artifact", R),
    ("GET", "/artifacts/{}"): Rule("artifact", R),
    ("PUT", "/artifacts/{}"): Rule("artifact", U),
    ("DELETE", "/artifacts/{}"): Rule("artifact", M),
    ("POST", "/mpu/create/{}"): Rule("artifact", U),
    ("POST", "/mpu/complete/{}"): Rule("artifact", U),
    ("POST", "/mpu/abort/{}"): Rule("artifact", U),
    ("PUT", "/mpu/upload/{}"): Rule("artifact", U),
}

# Routes outside the API prefixes.
PATHS: dict[tuple[str, str], Rule] = {
    ("GET", "/get-artifact"): Rule("run", R),
    ("GET", "/model-versions/get-artifact"): Rule("registered_model", R),
    ("GET", "/graphql"): Rule("global_read"),
    ("POST", "/graphql"): Rule("global_read"),
    ("POST", "/v1/traces"): Rule("otlp", U),
    ("POST", "/api/2.0/genesis-flow/tokens/create"): Rule("authenticated"),
    ("GET", "/api/2.0/genesis-flow/tokens/list"): Rule("authenticated"),
    ("DELETE", "/api/2.0/genesis-flow/tokens/delete"): Rule("authenticated"),
}


# Operator routes (the migration importer): no rule on purpose, so admins only.
ADMIN_ONLY_PREFIXES = ("/api/2.0/genesis-flow/import/",)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def find_rule(method: str, canonical: str) -> Rule | None:
    """The rule of a matched route, from its method and canonical (templated) path."""
    method = "GET" if method == "HEAD" else method
    path = _TEMPLATE.sub("{}", canonical)
    if (m := _API.match(path)) is not None:
        return MLFLOW.get((method, path[m.end():]))
    if (m := _ARTIFACTS.match(path)) is not None:
        return ARTIFACTS.get((method, path[m.end():]))
    return PATHS.get((method, path))


def route_class(method: str, canonical: str, rule: Rule | None) -> str:
    """Rate-limit class: ``artifacts`` (bytes), ``search`` (every read), ``writes`` (the rest)."""
    if _ARTIFACTS.match(canonical) or canonical.endswith(("/get-artifact", "/upload-artifact")):
        return "artifacts"
    if method in ("GET", "HEAD") or (rule is not None and rule.kind == "search") or canonical == "/graphql":
        return "search"
    return "writes"
