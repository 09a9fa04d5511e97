"""Writes only the web UI sends (`mlflow/server/__init__.py` registers them outside the protobuf
services): a file uploaded from the browser into a run, and a prompt-engineering run.

Both are compositions of writes this tier already has (run create, log-batch, run update,
artifact upload), so they go through the same validation, queue and commit.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from datetime import datetime, timezone
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from common import documents
from common.artifacts import safe_relative_path
from common.clock import now_ms
from common.errors import MlflowError
from common.mongo import RUNS
from common.requests import parse_json_body
from common.validation import run_not_found_message, validate_run_id
from common.web import json_response, require_json_content_type
from ingest import requests as rq
from ingest.artifacts import ArtifactService
from ingest.service import IngestService

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
SCHEME = "mlflow-artifacts:"
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"
LOG_MODEL_HISTORY_TAG = "mlflow.log-model.history"
SOURCE_TYPE_TAG = "mlflow.runSourceType"
EVAL_TABLE = "eval_results_table.json"


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _run_store_root(doc: dict[str, Any]) -> str:
    uri = doc.get("artifact_uri", "")
    if not uri.startswith(SCHEME):
        raise MlflowError.invalid(f"The run's artifacts are not served by this server ({uri}).")
    return safe_relative_path(uri[len(SCHEME):].lstrip("/"))


async def _run_document(db: AsyncDatabase, run_id: str) -> dict[str, Any]:
    validate_run_id(run_id)
    doc = await db[RUNS].find_one({"_id": run_id})
    if doc is None:
        raise MlflowError.not_found(run_not_found_message(run_id))
    return doc


async def upload_artifact(db: AsyncDatabase, artifacts: ArtifactService, request: web.Request) -> web.Response:
    """`upload-artifact?run_uuid=&path=`: the request body (at most 10 MB) becomes `<path>` in the run."""
    run_id = request.query.get("run_uuid")
    if not run_id:
        raise MlflowError.invalid("Request must specify run_uuid.")
    path = request.query.get("path")
    if not path:
        raise MlflowError.invalid("Request must specify path.")
    relative = safe_relative_path(path)
    if (request.content_length or 0) > MAX_UPLOAD_BYTES:
        raise MlflowError.invalid("Artifact size is too large. Max size is 10MB.")
    data = await request.content.read(MAX_UPLOAD_BYTES + 1)
    if not data:
        raise MlflowError.invalid("Request must specify data.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise MlflowError.invalid("Artifact size is too large. Max size is 10MB.")
    root = _run_store_root(await _run_document(db, run_id))
    await artifacts.upload(posixpath.join(root, relative), _one(data))
    return web.Response(content_type="application/json")


def _params(items: Any) -> list[tuple[str, str]]:
    return [(str(p.get("key")), str(p.get("value"))) for p in items or [] if isinstance(p, dict)]


async def create_promptlab_run(db: AsyncDatabase, service: IngestService, artifacts: ArtifactService,
                               request: web.Request) -> web.Response:
    """The prompt-engineering UI's run: params, tags and the evaluation table, then FINISHED.

    MLflow also saves a `model/` directory with its own model format (through the mlflow
    package); this server has no mlflow dependency and leaves it out.
    """
    require_json_content_type(request)
    args = parse_json_body(await request.read())
    for name in ("experiment_id", "prompt_template", "prompt_parameters", "model_route", "model_input",
                 "mlflow_version"):
        if not args.get(name):
            raise MlflowError.invalid(f"CreatePromptlabRun request must specify {name}.")
    prompt_parameters = _params(args["prompt_parameters"])
    model_parameters = _params(args.get("model_parameters"))
    output_parameters = _params(args.get("model_output_parameters"))
    created = await service.create_run(rq.decode({
        "experiment_id": str(args["experiment_id"]), "run_name": args.get("run_name"),
        "user_id": args.get("user_id", "unknown"), "start_time": args.get("start_time", now_ms()),
        "tags": args.get("tags") or [],
    }, rq.CreateRun))
    run_id = created["run"]["info"]["run_id"]
    params = [*model_parameters, ("model_route", str(args["model_route"])),
              ("prompt_template", str(args["prompt_template"]))]
    # MLflow records the run's `model` as logged (its files are left out here: see above)
    history = [{"run_id": run_id, "artifact_path": "model",
                "utc_time_created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f"),
                "model_uuid": uuid.uuid4().hex, "flavors": {}}]
    tags = [(LOG_MODEL_HISTORY_TAG, json.dumps(history)),
            (LOGGED_ARTIFACTS_TAG, json.dumps([{"path": EVAL_TABLE, "type": "table"}])),
            (SOURCE_TYPE_TAG, "PROMPT_ENGINEERING")]
    status = "FINISHED"
    try:
        await service.log_batch(rq.decode({"run_id": run_id, "params": [{"key": k, "value": v} for k, v in params],
                                           "tags": [{"key": k, "value": v} for k, v in tags]}, rq.LogBatch),
                                "committed")
        table = {"columns": [k for k, _ in prompt_parameters] + ["prompt", "output"] + [k for k, _ in output_parameters],
                 "data": [[v for _, v in prompt_parameters] + [args["model_input"], args.get("model_output")]
                          + [v for _, v in output_parameters]]}
        root = _run_store_root(await _run_document(db, run_id))
        await artifacts.upload(posixpath.join(root, EVAL_TABLE), _one(json.dumps(table).encode()))
    except MlflowError as err:
        if err.http_status >= 500:
            raise
        status = "FAILED"  # as MLflow: the run records that the rest did not work
    await service.update_run(rq.decode({"run_id": run_id, "status": status, "end_time": now_ms()}, rq.UpdateRun))
    return json_response({"run": documents.run(await _run_document(db, run_id))})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ui_api_routes(db: AsyncDatabase, service: IngestService, artifacts: ArtifactService) -> list[tuple[str, str, Handler]]:
    """(method, absolute path, handler) for the UI-only writes, at the reference server's paths."""

    async def upload(request: web.Request) -> web.Response:
        return await upload_artifact(db, artifacts, request)

    async def promptlab(request: web.Request) -> web.Response:
        return await create_promptlab_run(db, service, artifacts, request)

    return [
        ("POST", "/ajax-api/2.0/mlflow/upload-artifact", upload),
        ("POST", "/ajax-api/2.0/mlflow/runs/create-promptlab-run", promptlab),
    ]
