"""Request bodies of the tracking write endpoints: one msgspec Struct each, plus the handler schema
the reference server asserts before decoding (`mlflow/server/handlers.py`)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from common import validation as v
from common.requests import decode_message, parse_json_body

__all__ = ["decode", "parse_json_body"]

T = TypeVar("T")


class KeyValue(msgspec.Struct):
    key: str | None = None
    value: str | None = None


class MetricIn(msgspec.Struct):
    key: str | None = None
    value: float | None = None
    timestamp: int | None = None
    step: int | None = None
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class CreateExperiment(msgspec.Struct):
    name: str
    artifact_location: str | None = None
    tags: list[KeyValue] = []


class ExperimentId(msgspec.Struct):
    experiment_id: str


class UpdateExperiment(msgspec.Struct):
    experiment_id: str
    new_name: str


class SetExperimentTag(msgspec.Struct):
    experiment_id: str
    key: str
    value: str | None = None


class DeleteExperimentTag(msgspec.Struct):
    experiment_id: str
    key: str


class CreateRun(msgspec.Struct):
    experiment_id: str | None = None
    user_id: str | None = None
    start_time: int | None = None
    run_name: str | None = None
    tags: list[KeyValue] = []


class RunRef(msgspec.Struct):
    run_id: str | None = None
    run_uuid: str | None = None

    @property
    def id(self) -> str:
        return self.run_id or self.run_uuid or ""


class UpdateRun(RunRef):
    status: str | None = None
    end_time: int | None = None
    run_name: str | None = None


class LogMetric(RunRef):
    key: str | None = None
    value: float | None = None
    timestamp: int | None = None
    step: int | None = None
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class LogParam(RunRef):
    key: str | None = None
    value: str | None = None


class SetTag(RunRef):
    key: str | None = None
    value: str | None = None


class DeleteTag(RunRef):
    key: str | None = None


class LogBatch(RunRef):
    metrics: list[MetricIn] = []
    params: list[KeyValue] = []
    tags: list[KeyValue] = []


class DatasetIn(msgspec.Struct):
    name: str | None = None
    digest: str | None = None
    source_type: str | None = None
    source: str | None = None
    schema: str | None = None
    profile: str | None = None


class DatasetInputIn(msgspec.Struct):
    dataset: DatasetIn | None = None
    tags: list[KeyValue] = []


class ModelInputIn(msgspec.Struct):
    model_id: str


class ModelOutputIn(msgspec.Struct):
    model_id: str
    step: int = 0


class LogInputs(RunRef):
    datasets: list[DatasetInputIn] = []
    models: list[ModelInputIn] = []


class LogOutputs(RunRef):
    models: list[ModelOutputIn] = []


class CreateLoggedModel(msgspec.Struct):
    experiment_id: str
    name: str | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    params: list[KeyValue] = []
    tags: list[KeyValue] = []


class FinalizeLoggedModel(msgspec.Struct):
    status: int | str
    model_id: str | None = None


class SetLoggedModelTags(msgspec.Struct):
    tags: list[KeyValue] = []


class LogLoggedModelParams(msgspec.Struct):
    params: list[KeyValue] = []
    model_id: str | None = None


R, S, I, F, A = v.REQUIRED, v.STRING, v.INTLIKE, v.FLOATLIKE, v.ARRAY

SCHEMAS: dict[type, v.Schema] = {
    CreateExperiment: {"name": (R, S), "artifact_location": (S,), "tags": (A,)},
    ExperimentId: {"experiment_id": (R, S)},
    UpdateExperiment: {"experiment_id": (R, S), "new_name": (S, R)},
    SetExperimentTag: {"experiment_id": (R, S), "key": (R, S), "value": (S,)},
    DeleteExperimentTag: {"experiment_id": (R, S), "key": (R, S)},
    CreateRun: {"experiment_id": (S,), "start_time": (I,), "run_name": (S,), "user_id": (S,), "tags": (A,)},
    UpdateRun: {"run_id": (R, S), "end_time": (I,), "status": (S,), "run_name": (S,)},
    RunRef: {"run_id": (R, S)},
    LogMetric: {"run_id": (R, S), "key": (R, S), "value": (R, F), "timestamp": (I, R), "step": (I,),
                "model_id": (S,), "dataset_name": (S,), "dataset_digest": (S,)},
    LogParam: {"run_id": (R, S), "key": (R, S), "value": (S,)},
    SetTag: {"run_id": (R, S), "key": (R, S), "value": (S,)},
    DeleteTag: {"run_id": (R, S), "key": (R, S)},
    LogBatch: {"run_id": (S, R), "metrics": (A,), "params": (A,), "tags": (A,)},
    LogInputs: {"run_id": (R, S), "datasets": (A,), "models": (A,)},
    LogOutputs: {"run_id": (R, S), "models": (R, A)},
    CreateLoggedModel: {"experiment_id": (S, R), "name": (S,), "model_type": (S,), "source_run_id": (S,),
                        "params": (A,), "tags": (A,)},
    FinalizeLoggedModel: {"status": (R,)},
    SetLoggedModelTags: {"tags": (A,)},
    LogLoggedModelParams: {"params": (A,)},
}

def decode(body: dict[str, Any], kind: type[T]) -> T:
    """Check the handler schema (and log-batch's per-item fields), then decode into `kind`."""
    if kind is LogBatch:
        v.check_fields(body, SCHEMAS[kind])
        v.check_required_keys(body.get("metrics") or [], "metrics", ("key", "value", "timestamp"))
        v.check_required_keys(body.get("params") or [], "params", ("key",))
        v.check_required_keys(body.get("tags") or [], "tags", ("key",))
    return decode_message(body, kind, SCHEMAS[kind])
