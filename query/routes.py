"""The read endpoints: parse the request message, call the logic, answer JSON. Nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from common.web import json_response
from query import experiments, history, logged_models, runs
from query import requests as rq
from query.server_info import MLFLOW_VERSION, server_info

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
V3_PREFIXES = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# `GET logged-models/search` is not a model id: the path only exists for POST (405), so the GET
# route never answers "Logged model with ID 'search' not found".
MODEL_ID = "{model_id:(?!search$)[^/]+}"


async def request_message(request: web.Request, kind: type[T]) -> T:
    """MLflow's `_get_request_message`: a GET with a query string reads it, else the JSON body.
    Path parameters (`logged-models/{model_id}`) are fields of the message too, and win."""
    if request.method == "GET" and request.query:
        body: dict[str, Any] = rq.query_params(kind, request.query)
    else:
        body = rq.parse_json_body(await request.read())
    return rq.decode({**body, **request.match_info}, kind)


def build_routes(db: AsyncDatabase) -> list[tuple[str, str, Handler]]:
    """(method, path under the MLflow prefix, handler) for every read this tier owns."""

    def endpoint(kind: type[T], call: Callable[[T], Awaitable[dict[str, Any]]]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return json_response(await call(await request_message(request, kind)))
        return handler

    get_experiment = endpoint(rq.GetExperiment, lambda m: experiments.get_experiment(db, m.experiment_id))
    get_by_name = endpoint(rq.GetExperimentByName, lambda m: experiments.get_experiment_by_name(db, m.experiment_name))
    search_experiments = endpoint(rq.SearchExperiments, lambda m: experiments.search_experiments(db, m))
    get_run = endpoint(rq.GetRun, lambda m: runs.get_run(db, m.id))
    search_runs = endpoint(rq.SearchRuns, lambda m: runs.search_runs(db, m))
    get_history = endpoint(rq.GetMetricHistory, lambda m: history.get_metric_history(db, m))
    bulk_interval = endpoint(rq.GetMetricHistoryBulkInterval, lambda m: history.get_metric_history_bulk_interval(db, m))
    get_model = endpoint(rq.GetLoggedModel, lambda m: logged_models.get_logged_model(db, m))
    search_models = endpoint(rq.SearchLoggedModels, lambda m: logged_models.search_logged_models(db, m))
    return [
        ("GET", "/experiments/get", get_experiment),
        ("GET", "/experiments/get-by-name", get_by_name),
        ("GET", "/experiments/search", search_experiments),
        ("POST", "/experiments/search", search_experiments),
        ("GET", "/runs/get", get_run),
        ("POST", "/runs/search", search_runs),
        ("GET", "/metrics/get-history", get_history),
        ("GET", "/metrics/get-history-bulk-interval", bulk_interval),
        ("GET", f"/logged-models/{MODEL_ID}", get_model),
        ("POST", "/logged-models/search", search_models),
    ]


async def version(_: web.Request) -> web.Response:
    return web.Response(text=MLFLOW_VERSION, content_type="text/html")  # as Flask sends it


async def get_server_info(_: web.Request) -> web.Response:
    return json_response(server_info())


def add_routes(app: web.Application, db: AsyncDatabase) -> None:
    for method, path, handler in build_routes(db):
        for prefix in PREFIXES:
            app.router.add_route(method, prefix + path, handler)
    for prefix in V3_PREFIXES:
        app.router.add_get(prefix + "/server-info", get_server_info)
    app.router.add_get("/version", version)
