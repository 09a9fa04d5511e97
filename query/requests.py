"""Request messages of the read endpoints: one msgspec Struct each, plus the handler schema the
reference server asserts (`mlflow/server/handlers.py`).

Like MLflow's `_get_request_message`, a GET with query parameters is read from the query string
(fields declared as lists take every repeated value), anything else from the JSON body.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import msgspec
from multidict import MultiMapping

from common import validation as v
from common.errors import MlflowError
from common.requests import decode_message, parse_json_body

__all__ = ["decode", "parse_json_body", "query_params"]

T = TypeVar("T")


SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50000
# SearchLoggedModels.max_results defaults to 50 in service.proto, which is what the reference
# server sees when the field is absent; an explicit 0 falls through to the store's default (100).
SEARCH_LOGGED_MODELS_MAX_RESULTS_DEFAULT = 50
SEARCH_LOGGED_MODELS_MAX_RESULTS_STORE_DEFAULT = 100
MAX_RUNS_GET_METRIC_HISTORY_BULK = 100
MAX_RESULTS_PER_RUN = 2500

# Integers end up in MongoDB queries, and BSON integers are 64-bit.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]

ACTIVE_ONLY, DELETED_ONLY, ALL = 1, 2, 3
_VIEW_TYPES = {"ACTIVE_ONLY": ACTIVE_ONLY, "DELETED_ONLY": DELETED_ONLY, "ALL": ALL}
_STAGES = {ACTIVE_ONLY: ["active"], DELETED_ONLY: ["deleted"], ALL: ["active", "deleted"]}


class GetExperiment(msgspec.Struct):
    experiment_id: str = ""


class GetExperimentByName(msgspec.Struct):
    experiment_name: str = ""


class SearchExperiments(msgspec.Struct):
    max_results: Int64 | None = None
    page_token: str | None = None
    filter: str | None = None
    order_by: list[str] = []
    view_type: str | int | None = None


class GetRun(msgspec.Struct):
    run_id: str | None = None
    run_uuid: str | None = None

    @property
    def id(self) -> str:
        return self.run_id or self.run_uuid or ""


class SearchRuns(msgspec.Struct):
    experiment_ids: list[str | int] = []
    filter: str | None = None
    run_view_type: str | int | None = None
    max_results: Int64 | None = None
    order_by: list[str] = []
    page_token: str | None = None


class GetMetricHistory(GetRun):
    metric_key: str | None = None
    page_token: str | None = None
    max_results: Int64 | None = None


class GetMetricHistoryBulkInterval(msgspec.Struct):
    run_ids: list[str] = []
    metric_key: str | None = None
    start_step: Int64 | None = None
    end_step: Int64 | None = None
    max_results: Int64 | None = None


class GetLoggedModel(msgspec.Struct):
    model_id: str = ""  # from the path
    allow_deleted: str | bool = "false"  # the reference server reads `?allow_deleted=true` (any case)

    @property
    def include_deleted(self) -> bool:
        return str(self.allow_deleted).lower() == "true"


class LoggedModelDataset(msgspec.Struct):
    dataset_name: str = ""
    dataset_digest: str | None = None


class LoggedModelOrderBy(msgspec.Struct):
    field_name: str = ""
    ascending: bool = True  # the proto default
    dataset_name: str | None = None
    dataset_digest: str | None = None


class SearchLoggedModels(msgspec.Struct):
    experiment_ids: list[str] = []
    filter: str | None = None
    datasets: list[LoggedModelDataset] = []
    max_results: Int64 | None = None
    order_by: list[LoggedModelOrderBy] = []
    page_token: str | None = None


def _all_strings(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(i, str) for i in x)


def _at_most_50000(x: Any) -> bool:
    return int(x) <= SEARCH_MAX_RESULTS_THRESHOLD


R, S, I, A = v.REQUIRED, v.STRING, v.INTLIKE, v.ARRAY

SCHEMAS: dict[type, v.Schema] = {
    GetExperiment: {"experiment_id": (R, S)},
    GetExperimentByName: {"experiment_name": (R, S)},
    SearchExperiments: {"max_results": (I,), "order_by": (A,), "filter": (S,), "page_token": (S,)},
    GetRun: {"run_id": (R, S)},
    SearchRuns: {"experiment_ids": (A,), "filter": (S,), "max_results": (I, _at_most_50000),
                 "order_by": (A, _all_strings)},
    GetMetricHistory: {"run_id": (R, S), "metric_key": (R, S), "page_token": (S,), "max_results": (I,)},
    GetMetricHistoryBulkInterval: {"run_ids": (R, A, _all_strings), "metric_key": (R, S),
                                   "start_step": (I,), "end_step": (I,), "max_results": (I,)},
    GetLoggedModel: {"model_id": (R, S)},
    SearchLoggedModels: {"experiment_ids": (A, _all_strings, R), "filter": (S,), "datasets": (A,),
                         "max_results": (I,), "order_by": (A,), "page_token": (S,)},
}


def _list_fields(kind: type) -> set[str]:
    hints = typing.get_type_hints(kind)
    return {name for name in kind.__struct_fields__ if typing.get_origin(hints[name]) is list}


def query_params(kind: type, query: MultiMapping[str]) -> dict[str, Any]:
    """Query string -> request dict; list fields get every repeated value."""
    lists = _list_fields(kind)
    out: dict[str, Any] = {}
    for name in kind.__struct_fields__:
        if name in query:
            out[name] = query.getall(name) if name in lists else query.get(name)
    return out


def decode(body: Mapping[str, Any], kind: type[T]) -> T:
    return decode_message(body, kind, SCHEMAS[kind])


def view_stages(view_type: str | int | None) -> list[str]:
    """Lifecycle stages of a ViewType. Like the reference server, a value it cannot parse leaves
    the default (ACTIVE_ONLY) in place."""
    if isinstance(view_type, str):
        view_type = _VIEW_TYPES.get(view_type.upper(), int(view_type) if view_type.isdigit() else ACTIVE_ONLY)
    return _STAGES.get(view_type or ACTIVE_ONLY, _STAGES[ACTIVE_ONLY])


def logged_models_page_size(value: int | None) -> int:
    """SearchLoggedModels' page size. The reference store has no upper bound; a page here holds at
    most SEARCH_MAX_RESULTS_THRESHOLD models and a next_page_token says there are more, which every
    client already follows, so a large max_results is served rather than refused."""
    if value is None:
        return SEARCH_LOGGED_MODELS_MAX_RESULTS_DEFAULT
    if value == 0:
        return SEARCH_LOGGED_MODELS_MAX_RESULTS_STORE_DEFAULT
    if value < 0:
        raise MlflowError.invalid(f"Invalid value {value} for parameter 'max_results' supplied. It must be a positive integer")
    return min(value, SEARCH_MAX_RESULTS_THRESHOLD)


def max_results(value: int | None, default: int, *, limit: int = SEARCH_MAX_RESULTS_THRESHOLD) -> int:
    """The store's `_validate_max_results_param`, with MLflow's messages."""
    if value is None:
        return default
    if value < 1:
        raise MlflowError.invalid(f"Invalid value {value} for parameter 'max_results' supplied. It must be a positive integer")
    if value > limit:
        raise MlflowError.invalid(f"Invalid value {value} for parameter 'max_results' supplied. It must be at most {limit}")
    return value
