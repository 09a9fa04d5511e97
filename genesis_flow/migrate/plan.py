"""What the migration reads and how it maps MLflow entities to import requests. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from genesis_flow.migrate.points import Point, from_mlflow, metric_json

MODEL_STATUS = {"UNSPECIFIED": "LOGGED_MODEL_STATUS_UNSPECIFIED", "PENDING": "LOGGED_MODEL_PENDING",
                "READY": "LOGGED_MODEL_READY", "FAILED": "LOGGED_MODEL_UPLOAD_FAILED"}
IMPORT_BODY_LIMIT = 1_000_000  # params and tags ride in the import call up to this; beyond, log-batch
PARAMS_TAGS_PER_BATCH = 100


@dataclass
class Options:
    source_uri: str
    target_uri: str = ""
    source_artifacts: str | None = None
    experiments: list[str] | None = None  # names or ids
    since_ms: int | None = None
    dry_run: bool = False
    analyze_only: bool = False
    verify: bool = False
    workers: int = 4
    output: str | None = None
    progress: bool = True
    artifacts: bool = True
    registry: bool = True


def parse_since(text: str | None) -> int | None:
    """`--since`: epoch milliseconds, or an ISO date/time (UTC unless it says otherwise)."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def select_experiments(experiments: Iterable[Any], wanted: list[str] | None) -> list[Any]:
    if not wanted:
        return list(experiments)
    keys = set(wanted)
    return [e for e in experiments if e.experiment_id in keys or e.name in keys]


def run_selected(run: Any, since_ms: int | None) -> bool:
    """`--since`: runs started or ended at or after the time."""
    if since_ms is None:
        return True
    info = run.info
    return (info.start_time or 0) >= since_ms or (info.end_time or 0) >= since_ms


def kv(mapping: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(mapping.items())]


def experiment_body(exp: Any, lifecycle_stage: str) -> dict[str, Any]:
    body: dict[str, Any] = {"experiment_id": exp.experiment_id, "name": exp.name,
                            "lifecycle_stage": lifecycle_stage, "tags": kv(dict(exp.tags or {}))}
    if exp.creation_time is not None:
        body["creation_time"] = int(exp.creation_time)
    if exp.last_update_time is not None:
        body["last_update_time"] = int(exp.last_update_time)
    return body


def run_body(run: Any, lifecycle_stage: str, *, with_data: bool) -> dict[str, Any]:
    info = run.info
    body: dict[str, Any] = {"run_id": info.run_id, "experiment_id": info.experiment_id,
                            "user_id": info.user_id or "", "run_name": info.run_name or "",
                            "status": info.status, "lifecycle_stage": lifecycle_stage}
    if info.start_time is not None:
        body["start_time"] = int(info.start_time)
    if info.end_time is not None:
        body["end_time"] = int(info.end_time)
    if with_data:
        body["params"] = kv(run.data.params)
        body["tags"] = kv(run.data.tags)
    return body


def data_fits_import(run: Any) -> bool:
    size = sum(len(k) + len(v) + 30 for k, v in run.data.params.items())
    size += sum(len(k) + len(v) + 30 for k, v in run.data.tags.items())
    return size < IMPORT_BODY_LIMIT


def params_tags_batches(run: Any) -> list[dict[str, list[dict[str, str]]]]:
    """log-batch bodies (without run_id) carrying every param and tag, at most 100 of each."""
    params, tags = kv(run.data.params), kv(run.data.tags)
    out = []
    for i in range(0, max(len(params), len(tags)), PARAMS_TAGS_PER_BATCH):
        out.append({"params": params[i:i + PARAMS_TAGS_PER_BATCH], "tags": tags[i:i + PARAMS_TAGS_PER_BATCH]})
    return out


def dataset_inputs(run: Any) -> list[dict[str, Any]]:
    inputs = getattr(run, "inputs", None)
    out = []
    for di in getattr(inputs, "dataset_inputs", None) or []:
        d = di.dataset
        dataset = {"name": d.name, "digest": d.digest, "source_type": d.source_type, "source": d.source}
        if d.schema:
            dataset["schema"] = d.schema
        if d.profile:
            dataset["profile"] = d.profile
        out.append({"dataset": dataset, "tags": [{"key": t.key, "value": t.value} for t in di.tags or []]})
    return out


def model_inputs(run: Any) -> list[dict[str, str]]:
    inputs = getattr(run, "inputs", None)
    return [{"model_id": m.model_id} for m in getattr(inputs, "model_inputs", None) or []]


def model_outputs(run: Any) -> list[dict[str, Any]]:
    outputs = getattr(run, "outputs", None)
    return [{"model_id": m.model_id, "step": int(m.step or 0)} for m in getattr(outputs, "model_outputs", None) or []]


def logged_model_body(model: Any, lifecycle_stage: str = "active") -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_id": model.model_id, "experiment_id": model.experiment_id, "name": model.name,
        "status": MODEL_STATUS.get(str(model.status), "LOGGED_MODEL_READY"), "lifecycle_stage": lifecycle_stage,
        "params": kv(dict(model.params or {})), "tags": kv(dict(model.tags or {}))}
    for name, value in (("creation_timestamp_ms", model.creation_timestamp),
                        ("last_updated_timestamp_ms", model.last_updated_timestamp)):
        if value is not None:
            body[name] = int(value)
    if model.model_type:
        body["model_type"] = model.model_type
    if model.source_run_id:
        body["source_run_id"] = model.source_run_id
    return body


def model_metric(model_id: str, metric: Any) -> dict[str, Any]:
    """A logged model's metric as a log-batch item of its run."""
    point = from_mlflow(metric)
    return metric_json(metric.key, Point(point.step, point.timestamp, point.value, model_id,
                                         metric.dataset_name or None, metric.dataset_digest or None))


def missing_suffix(points: list[Point], stored: int) -> list[Point]:
    """What a history still needs: the target holds the first `stored` points of the send order
    (batches of one run apply in publish order); the writer drops any overlap anyway."""
    return points[stored:] if stored < len(points) else []


@dataclass
class Stats:
    experiments: int = 0
    runs: int = 0
    runs_complete_already: int = 0
    params_tags_sent: int = 0
    histories: int = 0
    points: int = 0
    points_sent: int = 0
    duplicates_dropped: int = 0
    files: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    logged_models: int = 0
    registered_models: int = 0
    model_versions: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    would_copy: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        secs = max(self.seconds, 1e-9)
        out["points_per_s"] = round(self.points_sent / secs, 1)
        out["mib_per_s"] = round(self.bytes_sent / 2**20 / secs, 2)
        return out


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str)
