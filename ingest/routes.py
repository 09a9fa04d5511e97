"""The write endpoints: decode the body, call the service, answer JSON. Nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from common import validation as v
from common.errors import MlflowError
from common.settings import AckMode
from common.web import json_response
from ingest import requests as rq
from ingest.bus import ACK_HEADER
from ingest.models import LoggedModelService
from ingest.service import IngestService

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")

Handler = Callable[[web.Request], Awaitable[web.Response]]


def ack_mode(request: web.Request, default: AckMode) -> AckMode:
    value = request.headers.get(ACK_HEADER, default).strip().lower()
    if value not in ("committed", "enqueued"):
        raise MlflowError.invalid(f"{ACK_HEADER} must be 'committed' or 'enqueued', got '{value}'.")
    return value  # type: ignore[return-value]


async def _body(request: web.Request, *, limit: int | None = None) -> dict[str, Any]:
    raw = await request.read()
    if limit is not None:
        v.validate_batch_request_size(len(raw))
    return rq.parse_json_body(raw)


def build_routes(service: IngestService, models: LoggedModelService, default_ack: AckMode,
                 ) -> list[tuple[str, str, Handler]]:
    """(method, path under the MLflow prefix, handler) for every write this tier owns."""

    def simple(kind: type, call: Callable[[Any], Awaitable[dict[str, Any]]]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return json_response(await call(rq.decode(await _body(request), kind)))
        return handler

    def with_ack(kind: type, call: Callable[[Any, AckMode], Awaitable[dict[str, Any]]], limit: int | None = None) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            mode = ack_mode(request, default_ack)
            return json_response(await call(rq.decode(await _body(request, limit=limit), kind), mode))
        return handler

    def for_model(kind: type | None, call: Callable[..., Awaitable[dict[str, Any]]]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            args: list[Any] = [request.match_info["model_id"]]
            if "tag_key" in request.match_info:
                args.append(request.match_info["tag_key"])
            if kind is not None:
                args.append(rq.decode(await _body(request), kind))
            return json_response(await call(*args))
        return handler

    s, m = service, models
    return [
        ("POST", "/logged-models", simple(rq.CreateLoggedModel, m.create)),
        ("PATCH", "/logged-models/{model_id}", for_model(rq.FinalizeLoggedModel, m.finalize)),
        ("DELETE", "/logged-models/{model_id}", for_model(None, m.delete)),
        ("PATCH", "/logged-models/{model_id}/tags", for_model(rq.SetLoggedModelTags, m.set_tags)),
        ("DELETE", "/logged-models/{model_id}/tags/{tag_key}", for_model(None, m.delete_tag)),
        ("POST", "/logged-models/{model_id}/params", for_model(rq.LogLoggedModelParams, m.log_params)),
        ("POST", "/experiments/create", simple(rq.CreateExperiment, s.create_experiment)),
        ("POST", "/experiments/update", simple(rq.UpdateExperiment, s.rename_experiment)),
        ("POST", "/experiments/delete", simple(rq.ExperimentId, s.delete_experiment)),
        ("POST", "/experiments/restore", simple(rq.ExperimentId, s.restore_experiment)),
        ("POST", "/experiments/set-experiment-tag", simple(rq.SetExperimentTag, s.set_experiment_tag)),
        ("POST", "/experiments/delete-experiment-tag", simple(rq.DeleteExperimentTag, s.delete_experiment_tag)),
        ("POST", "/runs/create", simple(rq.CreateRun, s.create_run)),
        ("POST", "/runs/update", simple(rq.UpdateRun, s.update_run)),
        ("POST", "/runs/delete", simple(rq.RunRef, s.delete_run)),
        ("POST", "/runs/restore", simple(rq.RunRef, s.restore_run)),
        ("POST", "/runs/log-metric", with_ack(rq.LogMetric, s.log_metric)),
        ("POST", "/runs/log-parameter", with_ack(rq.LogParam, s.log_param)),
        ("POST", "/runs/set-tag", with_ack(rq.SetTag, s.set_tag)),
        ("POST", "/runs/delete-tag", simple(rq.DeleteTag, s.delete_tag)),
        ("POST", "/runs/log-batch", with_ack(rq.LogBatch, s.log_batch, limit=v.MAX_BATCH_LOG_REQUEST_SIZE)),
        ("POST", "/runs/log-inputs", simple(rq.LogInputs, s.log_inputs)),
        ("POST", "/runs/outputs", simple(rq.LogOutputs, s.log_outputs)),
    ]


def add_routes(app: web.Application, service: IngestService, models: LoggedModelService,
               default_ack: AckMode) -> None:
    for method, path, handler in build_routes(service, models, default_ack):
        for prefix in PREFIXES:
            app.router.add_route(method, prefix + path, handler)
