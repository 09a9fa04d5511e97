"""MongoDB documents <-> MLflow REST JSON shapes.

Both ingest (runs/create, runs/update responses) and query render runs and experiments, so the
mapping lives here once. Output dicts follow protobuf-JSON conventions as the reference server
prints them: empty lists and unset fields are omitted, NaN is the string "NaN".
"""

from __future__ import annotations

import math
from typing import Any

from common.keys import decode_key, encode_key

ARTIFACTS_FOLDER = "artifacts"
DEFAULT_WORKSPACE = "default"


def experiment_artifact_location(experiment_id: str) -> str:
    return f"mlflow-artifacts:/{experiment_id}"


def run_artifact_uri(experiment_artifact_location: str, run_id: str) -> str:
    return f"{experiment_artifact_location.rstrip('/')}/{run_id}/{ARTIFACTS_FOLDER}"


def json_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _kv_list(mapping: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"key": decode_key(k), "value": v} for k, v in (mapping or {}).items()]


def latest_metric(stored: dict[str, Any]) -> float:
    return math.nan if stored.get("nan") else stored["v"]


def run_info(doc: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_uuid": doc["_id"],
        "experiment_id": doc["experiment_id"],
        "run_name": doc.get("run_name", ""),
        "user_id": doc.get("user_id", ""),
        "status": doc.get("status", "RUNNING"),
        "start_time": doc.get("start_time"),
        "end_time": doc.get("end_time"),
        "artifact_uri": doc.get("artifact_uri", ""),
        "lifecycle_stage": doc.get("lifecycle_stage", "active"),
        "run_id": doc["_id"],
    }
    return {k: v for k, v in info.items() if v is not None}


def run_data(doc: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    metrics = [
        {"key": decode_key(k), "value": json_float(latest_metric(m)), "timestamp": m["t"], "step": m["s"]}
        for k, m in (doc.get("metrics") or {}).items()
    ]
    if metrics:
        data["metrics"] = metrics
    params = _kv_list(doc.get("params"))
    if params:
        data["params"] = params
    tags = _kv_list(doc.get("tags"))
    if tags:
        data["tags"] = tags
    return data


def run_inputs(doc: dict[str, Any], *, with_models: bool = True) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    datasets = doc.get("dataset_inputs") or []
    if datasets:
        inputs["dataset_inputs"] = datasets
    models = doc.get("model_inputs") or []
    if models and with_models:
        inputs["model_inputs"] = models
    return inputs


def run_outputs(doc: dict[str, Any]) -> dict[str, Any]:
    models = doc.get("model_outputs") or []
    return {"model_outputs": models} if models else {}


def run(doc: dict[str, Any], *, with_outputs: bool = True, with_model_inputs: bool = True) -> dict[str, Any]:
    """`with_model_inputs=False`: as the SQL store's search results, which load dataset inputs only."""
    out: dict[str, Any] = {"info": run_info(doc), "data": run_data(doc),
                           "inputs": run_inputs(doc, with_models=with_model_inputs)}
    if with_outputs:
        out["outputs"] = run_outputs(doc)
    return out


def experiment(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "experiment_id": doc["_id"],
        "name": doc["name"],
        "artifact_location": doc.get("artifact_location", ""),
        "lifecycle_stage": doc.get("lifecycle_stage", "active"),
        "last_update_time": doc.get("last_update_time"),
        "creation_time": doc.get("creation_time"),
    }
    tags = _kv_list(doc.get("tags"))
    if tags:
        out["tags"] = tags
    out["workspace"] = DEFAULT_WORKSPACE  # MLflow 3.17 names the workspace even when they are off
    return {k: v for k, v in out.items() if v is not None}


def new_run_document(
    *, run_id: str, experiment_id: str, user_id: str, run_name: str, start_time: int,
    artifact_uri: str, tags: list[tuple[str, str]],
) -> dict[str, Any]:
    return {
        "_id": run_id,
        "experiment_id": experiment_id,
        "run_name": run_name,
        "user_id": user_id,
        "status": "RUNNING",
        "start_time": start_time,
        "end_time": None,
        "artifact_uri": artifact_uri,
        "lifecycle_stage": "active",
        "deleted_time": None,
        "params": {},
        "tags": {encode_key(k): v for k, v in tags},
        "metrics": {},
        "mb": {},
    }


def new_experiment_document(
    *, experiment_id: str, name: str, artifact_location: str, creation_time: int, tags: list[tuple[str, str]],
) -> dict[str, Any]:
    return {
        "_id": experiment_id,
        "name": name,
        "artifact_location": artifact_location,
        "lifecycle_stage": "active",
        "creation_time": creation_time,
        "last_update_time": creation_time,
        "tags": {encode_key(k): v for k, v in tags},
    }


# Optional fields of a stored history point's extras dict, in Metric proto field order.
METRIC_POINT_EXTRAS = ("dataset_name", "dataset_digest", "model_id")


def metric_point(key: str, point: list[Any], *, run_id: str | None = None) -> dict[str, Any]:
    """A stored history point `[step, timestamp, value (None = NaN), {extras}?]` as an MLflow Metric.

    With `run_id` it is the bulk endpoints' MetricWithRunId, which has no extras fields.
    """
    value = point[2]
    out: dict[str, Any] = {"key": key, "value": "NaN" if value is None else json_float(value),
                           "timestamp": point[1], "step": point[0]}
    if run_id is not None:
        out["run_id"] = run_id
        return out
    extras = point[3] if len(point) > 3 else None
    if extras:
        for name in METRIC_POINT_EXTRAS:
            if extras.get(name):
                out[name] = extras[name]
    return out


def model_artifact_location(experiment_artifact_location: str, model_id: str) -> str:
    return f"{experiment_artifact_location.rstrip('/')}/models/{model_id}/{ARTIFACTS_FOLDER}"


def new_logged_model_document(
    *, model_id: str, experiment_id: str, name: str, artifact_location: str, creation_timestamp_ms: int,
    model_type: str, source_run_id: str | None, tags: list[tuple[str, str]], params: list[tuple[str, str]],
) -> dict[str, Any]:
    return {
        "_id": model_id,
        "experiment_id": experiment_id,
        "name": name,
        "artifact_location": artifact_location,
        "creation_timestamp_ms": creation_timestamp_ms,
        "last_updated_timestamp_ms": creation_timestamp_ms,
        "status": "LOGGED_MODEL_PENDING",
        "model_type": model_type,
        "source_run_id": source_run_id,
        "lifecycle_stage": "active",
        "tags": {encode_key(k): v for k, v in tags},
        "params": {encode_key(k): v for k, v in params},
        "metrics": [],
    }


def model_metric(stored: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": stored["key"],
        "value": json_float(math.nan if stored.get("nan") else stored["value"]),
        "timestamp": stored["timestamp"],
        "step": stored["step"],
    }
    for field in ("dataset_name", "dataset_digest", "model_id", "run_id"):
        if stored.get(field):
            out[field] = stored[field]
    return out


def logged_model(doc: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_id": doc["_id"],
        "experiment_id": doc["experiment_id"],
        "name": doc["name"],
        "creation_timestamp_ms": doc["creation_timestamp_ms"],
        "last_updated_timestamp_ms": doc["last_updated_timestamp_ms"],
        "artifact_uri": doc["artifact_location"],
        "status": doc.get("status", "LOGGED_MODEL_PENDING"),
        "status_message": doc.get("status_message"),
        "model_type": doc.get("model_type", ""),
        "source_run_id": doc.get("source_run_id"),
    }
    info = {k: v for k, v in info.items() if v is not None}
    tags = sorted(_kv_list(doc.get("tags")), key=lambda t: t["key"])
    if tags:
        info["tags"] = tags
    data: dict[str, Any] = {}
    params = _kv_list(doc.get("params"))
    if params:
        data["params"] = params
    metrics = [model_metric(m) for m in doc.get("metrics") or []]
    if metrics:
        data["metrics"] = metrics
    return {"info": info, "data": data}
