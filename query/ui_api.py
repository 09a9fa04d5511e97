"""Read endpoints only the web UI calls (`mlflow/server/__init__.py` registers them outside the
protobuf services): metric history of many runs, dataset summaries, a logged model's files, trace
artifacts, and UI telemetry (accepted and dropped: this server reports nothing anywhere)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from common.artifacts import ArtifactStore, join_under, safe_relative_path
from common.documents import metric_point
from common.errors import BAD_REQUEST, MlflowError
from common.keys import encode_key
from common.mongo import LOGGED_MODELS, METRICS, RUNS
from common.requests import parse_json_body
from common.web import json_response, require_json_content_type
from query.artifacts import SCHEME, listing, stream_file
from query.filters import parse_experiment_id
from query.history import time_order
from query.registry import version_artifact

MAX_HISTORY_RESULTS = 25000
MAX_RUN_IDS_PER_REQUEST = 100
MAX_EXPERIMENT_IDS_PER_REQUEST = 20
MAX_DATASET_SUMMARIES = 1000
DATASET_CONTEXT_TAG = "mlflow.data.context"
# What the reference answers when telemetry is off (mlflow.telemetry.constant.FALLBACK_UI_CONFIG).
UI_TELEMETRY_OFF = {"disable_ui_telemetry": True, "disable_ui_events": [], "ui_rollout_percentage": 0}
# MLflow's assistant runs a coding agent on the server's machine; this server offers none, and
# says so the way the reference does when nothing is configured (every page asks).
ASSISTANT_CONFIG = {"providers": {}, "projects": {}, "remote_access_allowed": False}
ASSISTANT_PROVIDERS = {"providers": [], "resolved": None, "gateway_vendor_options": {}}


async def history_bulk(db: AsyncDatabase, run_ids: list[str], metric_key: str | None,
                       max_results: str | None) -> dict[str, Any]:
    """`metrics/get-history-bulk`: every point of `metric_key` of up to 100 runs, by run id then
    (timestamp, step, value), at most 25,000 in all."""
    if not run_ids:
        raise MlflowError.invalid("GetMetricHistoryBulk request must specify at least one run_id.")
    if len(run_ids) > MAX_RUN_IDS_PER_REQUEST:
        raise MlflowError.invalid(f"GetMetricHistoryBulk request cannot specify more than {MAX_RUN_IDS_PER_REQUEST}"
                                  f" run_ids. Received {len(run_ids)} run_ids.")
    if metric_key is None:
        raise MlflowError.invalid("GetMetricHistoryBulk request must specify a metric_key.")
    try:
        limit = min(int(max_results) if max_results is not None else MAX_HISTORY_RESULTS, MAX_HISTORY_RESULTS)
    except ValueError:
        raise MlflowError.invalid(f"Invalid value {max_results!r} for parameter 'max_results' supplied.") from None
    by_run: dict[str, list[list[Any]]] = defaultdict(list)
    query = {"run_id": {"$in": sorted(set(run_ids))}, "key": encode_key(metric_key)}
    async for bucket in db[METRICS].find(query, {"_id": 0, "run_id": 1, "p": 1}):
        by_run[bucket["run_id"]].extend(bucket.get("p") or ())
    metrics: list[dict[str, Any]] = []
    for run_id in sorted(set(run_ids)):
        for point in sorted(by_run.get(run_id, ()), key=time_order):
            metrics.append(metric_point(metric_key, point, run_id=run_id))
    return {"metrics": metrics[:limit]}  # a negative limit slices as the reference's does


class SearchDatasets(msgspec.Struct):
    experiment_ids: list[str] = []


async def search_datasets(db: AsyncDatabase, req: SearchDatasets) -> dict[str, Any]:
    """Distinct (experiment, dataset name, digest, context) over the experiments' runs."""
    if not req.experiment_ids:
        raise MlflowError.invalid("SearchDatasets request must specify at least one experiment_id.")
    if len(req.experiment_ids) > MAX_EXPERIMENT_IDS_PER_REQUEST:
        raise MlflowError.invalid(
            f"SearchDatasets request cannot specify more than {MAX_EXPERIMENT_IDS_PER_REQUEST} experiment_ids. "
            f"Received {len(req.experiment_ids)} experiment_ids.")
    experiment_ids = [parse_experiment_id(e) for e in req.experiment_ids]
    seen: dict[tuple[str, str, str, str | None], None] = {}
    query = {"experiment_id": {"$in": experiment_ids}, "dataset_inputs.0": {"$exists": True}}
    async for run in db[RUNS].find(query, {"experiment_id": 1, "dataset_inputs": 1}):
        for entry in run.get("dataset_inputs") or ():
            dataset = entry.get("dataset") or {}
            context = next((t.get("value") for t in entry.get("tags") or () if t.get("key") == DATASET_CONTEXT_TAG), None)
            seen.setdefault((run["experiment_id"], dataset.get("name", ""), dataset.get("digest", ""), context))
            if len(seen) >= MAX_DATASET_SUMMARIES:
                break
    summaries = []
    for experiment_id, name, digest, context in seen:
        summary = {"experiment_id": experiment_id, "name": name, "digest": digest}
        if context is not None:
            summary["context"] = context
        summaries.append(summary)
    return {"dataset_summaries": summaries} if summaries else {}


async def _logged_model_root(db: AsyncDatabase, model_id: str) -> tuple[str, str]:
    """(artifact_location, store path of it) of a logged model that exists."""
    doc = await db[LOGGED_MODELS].find_one({"_id": model_id}, {"artifact_location": 1})
    if doc is None:
        raise MlflowError.not_found(f"Logged model with ID '{model_id}' not found.")
    location = doc.get("artifact_location", "")
    if not location.startswith(SCHEME):
        raise MlflowError.invalid(f"The logged model's artifacts are not served by this server ({location}).")
    return location, safe_relative_path(location[len(SCHEME):].lstrip("/"))


async def logged_model_file(request: web.Request, db: AsyncDatabase, store: ArtifactStore) -> web.StreamResponse:
    """`logged-models/<id>/artifacts/files?artifact_file_path=...`: one file of a logged model."""
    path = request.query.get("artifact_file_path")
    if not path:
        raise MlflowError('Request must include the "artifact_file_path" query parameter.', BAD_REQUEST)
    relative = safe_relative_path(path)
    _, root = await _logged_model_root(db, request.match_info["model_id"])
    return await stream_file(request, store, join_under(root, relative))


async def logged_model_directory(request: web.Request, db: AsyncDatabase, store: ArtifactStore) -> dict[str, Any]:
    """`logged-models/<id>/artifacts/directories?artifact_directory_path=...`: a listing."""
    path = request.query.get("artifact_directory_path")
    relative = safe_relative_path(path) if path else ""
    location, root = await _logged_model_root(db, request.match_info["model_id"])
    return {"root_uri": location, **listing(await store.list(join_under(root, relative)), under=relative)}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ui_api_routes(db: AsyncDatabase, store: ArtifactStore) -> list[tuple[str, str, Handler]]:
    """(method, absolute path, handler) for the UI-only reads, at the reference server's paths."""

    async def get_history_bulk(request: web.Request) -> web.Response:
        q = request.query
        return json_response(await history_bulk(db, q.getall("run_id", []), q.get("metric_key"), q.get("max_results")))

    async def post_search_datasets(request: web.Request) -> web.Response:
        require_json_content_type(request)
        body = parse_json_body(await request.read())
        ids = body.get("experiment_ids") or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            ids = []  # the reference's protobuf parse leaves them unset: "must specify at least one"
        return json_response(await search_datasets(db, SearchDatasets(ids)))

    async def get_logged_model_file(request: web.Request) -> web.StreamResponse:
        return await logged_model_file(request, db, store)

    async def get_logged_model_directory(request: web.Request) -> web.Response:
        return json_response(await logged_model_directory(request, db, store))

    async def gateway_proxy(_: web.Request) -> web.Response:
        return json_response({"endpoints": []})  # no AI gateway: the reference's answer without one

    async def get_version_artifact(request: web.Request) -> web.StreamResponse:
        return await version_artifact(request, db, store)

    async def assistant_config(_: web.Request) -> web.Response:
        return json_response(ASSISTANT_CONFIG)

    async def assistant_providers(_: web.Request) -> web.Response:
        return json_response(ASSISTANT_PROVIDERS)

    async def get_ui_telemetry(_: web.Request) -> web.Response:
        return json_response(UI_TELEMETRY_OFF)

    async def post_ui_telemetry(request: web.Request) -> web.Response:
        await request.read()  # dropped: nothing is reported anywhere
        return json_response({"status": "disabled"})

    return [
        ("GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk", get_history_bulk),
        ("POST", "/ajax-api/2.0/mlflow/experiments/search-datasets", post_search_datasets),
        ("GET", "/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files", get_logged_model_file),
        ("GET", "/api/2.0/mlflow/logged-models/{model_id}/artifacts/directories", get_logged_model_directory),
        ("GET", "/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/directories", get_logged_model_directory),
        ("GET", "/ajax-api/2.0/mlflow/gateway-proxy", gateway_proxy),
        ("POST", "/ajax-api/2.0/mlflow/gateway-proxy", gateway_proxy),
        ("GET", "/model-versions/get-artifact", get_version_artifact),
        ("GET", "/ajax-api/3.0/mlflow/ui-telemetry", get_ui_telemetry),
        ("GET", "/ajax-api/3.0/mlflow/assistant/config", assistant_config),
        ("GET", "/ajax-api/3.0/mlflow/assistant/providers", assistant_providers),
        ("POST", "/ajax-api/3.0/mlflow/ui-telemetry", post_ui_telemetry),
    ]
