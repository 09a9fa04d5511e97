"""Typed search clauses -> MongoDB query documents and sort plans over the stored layout.

Safety rests on two rules, both enforced here:

* field paths are built only from fixed attribute names or `encode_key(key)` under the `metrics`,
  `params` and `tags` maps (encoding removes `.` and `$`, so a key cannot climb out of its map or
  become an operator);
* user text is only ever a *value*: a string or number compared for equality/order, or a LIKE
  pattern turned into a regex whose literal parts are escaped. No user text becomes a regex or an
  operator; inside an aggregation expression (where a leading `$` would be a field path) it only
  appears wrapped in `$literal`.

Semantics follow MLflow's SQL store: a clause on a param/tag/metric only matches runs that have
it (`!=` included); NaN metrics never satisfy a numeric comparison except `!=`; sorting puts
missing values (and NaN metrics) last in both directions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from common.keys import encode_key
from query.filters import (
    ATTRIBUTE,
    DATASET,
    METRIC,
    PARAM,
    TAG,
    Clause,
    ModelOrderTerm,
    OrderTerm,
)

MONGO_OPS = {"=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}

RUN_ATTRIBUTE_FIELDS = {
    "run_id": "_id", "run_name": "run_name", "status": "status", "user_id": "user_id",
    "artifact_uri": "artifact_uri", "start_time": "start_time", "end_time": "end_time",
}
EXPERIMENT_ATTRIBUTE_FIELDS = {
    "experiment_id": "_id", "name": "name", "creation_time": "creation_time", "last_update_time": "last_update_time",
}
_ENTITY_MAPS = {METRIC: "metrics", PARAM: "params", TAG: "tags"}
DATASET_CONTEXT_TAG = "mlflow.data.context"
MATCH_NOTHING: dict[str, Any] = {"_id": {"$in": []}}


def entity_path(kind: str, key: str) -> str:
    """`params.<encoded key>` etc.: the only way a user key becomes part of a field path."""
    return f"{_ENTITY_MAPS[kind]}.{encode_key(key)}"


def like_regex(pattern: str, *, ignore_case: bool) -> dict[str, str]:
    """SQL LIKE -> an anchored regex: `%` any run, `_` one character, everything else literal.

    `(?![\\s\\S])` is "end of text" in both PCRE and Python `re` (`$` would also match before a
    trailing newline); NUL is spelled `\\x00` because a BSON regex is a C string.
    """
    parts = []
    for ch in re.sub("%+", "%", pattern):  # "%%%" is "%"; fewer `.*` means less backtracking
        if ch == "%":
            parts.append(".*")
        elif ch == "_":
            parts.append(".")
        elif ch == "\x00":
            parts.append("\\x00")
        else:
            parts.append(re.escape(ch))
    return {"$regex": "^" + "".join(parts) + "(?![\\s\\S])", "$options": "si" if ignore_case else "s"}


def string_condition(comparator: str, value: Any) -> Any:
    """Condition on a string field that must exist (SQL semantics: NULL never compares)."""
    if comparator == "=":
        return {"$eq": value}
    if comparator == "!=":
        return {"$nin": [value, None]}
    if comparator in ("LIKE", "ILIKE"):
        return like_regex(value, ignore_case=comparator == "ILIKE")
    if comparator == "IN":
        return {"$in": list(value)}
    if comparator == "NOT IN":
        return {"$nin": [*value, None]}
    raise ValueError(f"unsupported string comparator {comparator}")


def numeric_condition(comparator: str, value: int | float) -> dict[str, Any]:
    if comparator == "!=":
        return {"$nin": [value, None]}
    return {MONGO_OPS[comparator]: value}


def _metric_clause(clause: Clause) -> dict[str, Any]:
    base = entity_path(METRIC, clause.key)
    value_path, nan_path = f"{base}.v", f"{base}.nan"
    if clause.comparator == "!=":
        # NaN != anything; the stored placeholder value of a NaN point must not decide.
        return {"$or": [{value_path: {"$nin": [clause.value, None]}}, {nan_path: True}]}
    return {value_path: {MONGO_OPS[clause.comparator]: clause.value}, nan_path: {"$ne": True}}


def _dataset_clause(clause: Clause) -> dict[str, Any]:
    cond = string_condition(clause.comparator, clause.value)
    if clause.key == "context":
        element = {"tags": {"$elemMatch": {"key": DATASET_CONTEXT_TAG, "value": cond}}}
    else:
        element = {f"dataset.{clause.key}": cond}
    return {"dataset_inputs": {"$elemMatch": element}}


def _keyed_string_clause(path: str, clause: Clause) -> dict[str, Any]:
    if clause.comparator == "IS NULL":
        return {path: {"$exists": False}}
    if clause.comparator == "IS NOT NULL":
        return {path: {"$exists": True}}
    return {path: string_condition(clause.comparator, clause.value)}


def run_clause(clause: Clause) -> dict[str, Any]:
    if clause.kind == METRIC:
        return _metric_clause(clause)
    if clause.kind in (PARAM, TAG):
        return _keyed_string_clause(entity_path(clause.kind, clause.key), clause)
    if clause.kind == DATASET:
        return _dataset_clause(clause)
    field = RUN_ATTRIBUTE_FIELDS[clause.key]
    if clause.key in ("start_time", "end_time"):
        return {field: numeric_condition(clause.comparator, clause.value)}  # type: ignore[arg-type]
    return {field: string_condition(clause.comparator, clause.value)}


def one_of(values: list[str]) -> Any:
    """`$in`, or plain equality for one value: the same to MongoDB's planner, and simpler
    planners (SecantusDB's) only match the index prefix on equality."""
    return values[0] if len(values) == 1 else {"$in": values}


def run_filter(experiment_ids: list[str], stages: list[str], clauses: list[Clause]) -> dict[str, Any]:
    """The `$match` of a runs search: experiments and lifecycle first (the index prefix), then clauses."""
    query: dict[str, Any] = {"experiment_id": one_of(experiment_ids), "lifecycle_stage": one_of(stages)}
    if clauses:
        query["$and"] = [run_clause(c) for c in clauses]
    return query


def experiment_clause(clause: Clause) -> dict[str, Any]:
    if clause.kind == TAG:
        return _keyed_string_clause(entity_path(TAG, clause.key), clause)
    field = EXPERIMENT_ATTRIBUTE_FIELDS[clause.key]
    if clause.key in ("creation_time", "last_update_time"):
        return {field: numeric_condition(clause.comparator, clause.value)}  # type: ignore[arg-type]
    return {field: string_condition(clause.comparator, clause.value)}


def experiment_filter(stages: list[str], clauses: list[Clause]) -> dict[str, Any]:
    query: dict[str, Any] = {"lifecycle_stage": {"$in": stages}}
    if clauses:
        query["$and"] = [experiment_clause(c) for c in clauses]
    return query


# --- sorting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    field: str  # a stored field, or one the plan computes with $addFields
    ascending: bool
    nullable: bool = True  # False lets paging skip the "or null" branch (keeps index plans simple)


@dataclass(frozen=True)
class SortPlan:
    """How to order a search: computed fields (empty: a plain indexed `find` can sort) and keys.

    The last key is always unique (`_id`), so the keys of the last row of a page are a cursor.
    """

    computed: dict[str, Any]
    keys: list[SortKey]

    def mongo_sort(self) -> dict[str, int]:
        return {k.field: 1 if k.ascending else -1 for k in self.keys}


def _missing_flag(path: str) -> dict[str, Any]:
    return {"$cond": [{"$eq": [{"$ifNull": [f"${path}", None]}, None]}, 1, 0]}


def _metric_sort_fields(key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(flag, value): real values (0), then NaN (1), then runs without the metric (2), as the SQL
    store's CASE orders them; the value is null whenever the flag is not 0."""
    base = entity_path(METRIC, key)
    is_nan = {"$eq": [f"${base}.nan", True]}
    value = {"$ifNull": [f"${base}.v", None]}
    flag = {"$cond": [{"$eq": [value, None]}, 2, {"$cond": [is_nan, 1, 0]}]}
    return flag, {"$cond": [is_nan, None, value]}


def metrics_present(clauses: list[Clause]) -> frozenset[str]:
    """Metric keys every matching run has, with a real (not NaN) value: those a comparison other
    than `!=` names (`_metric_clause` requires the value and excludes NaN; clauses are ANDed)."""
    return frozenset(c.key for c in clauses if c.kind == METRIC and c.comparator in ("=", "<", "<=", ">", ">="))


def run_sort_plan(terms: list[OrderTerm], present: frozenset[str] = frozenset()) -> SortPlan:
    """`present`: metric keys the filter guarantees (`metrics_present`). Ordering by one of them
    needs no computed missing/NaN flag (it would be 0 on every row), so the stored value sorts
    and the search stays a plain `find`: about half the time of the aggregation on large
    experiments, in the same order."""
    computed: dict[str, Any] = {}
    keys: list[SortKey] = []
    for i, term in enumerate(terms):
        if term.kind == ATTRIBUTE and term.key in ("start_time", "run_id"):
            # always set: sort the stored field, so an index can serve it
            keys.append(SortKey(RUN_ATTRIBUTE_FIELDS[term.key], term.ascending, nullable=False))
            continue
        if term.kind == METRIC and term.key in present:
            keys.append(SortKey(f"{entity_path(METRIC, term.key)}.v", term.ascending, nullable=False))
            continue
        flag_field, value_field = f"_o{i}f", f"_o{i}v"
        if term.kind == METRIC:
            computed[flag_field], computed[value_field] = _metric_sort_fields(term.key)
        else:
            path = RUN_ATTRIBUTE_FIELDS[term.key] if term.kind == ATTRIBUTE else entity_path(term.kind, term.key)
            computed[flag_field] = _missing_flag(path)
            computed[value_field] = {"$ifNull": [f"${path}", None]}
        keys.append(SortKey(flag_field, True, nullable=False))
        keys.append(SortKey(value_field, term.ascending))
    named = {k.field for k in keys}
    if "start_time" not in named:
        keys.append(SortKey("start_time", False, nullable=False))
    if "_id" not in named:
        keys.append(SortKey("_id", True, nullable=False))
    return SortPlan(computed, keys)


DEFAULT_EXPERIMENT_ORDER = [OrderTerm(ATTRIBUTE, "creation_time", False), OrderTerm(ATTRIBUTE, "experiment_id", True)]
_EXPERIMENT_ID_NUMBER = "_eid"


def experiment_sort_plan(terms: list[OrderTerm]) -> SortPlan:
    """Experiment ids order as integers (they are INTEGER in MLflow's SQL store); the SQL store's
    tie-breaker is experiment_id DESC when the order does not name it."""
    terms = terms or DEFAULT_EXPERIMENT_ORDER
    keys: list[SortKey] = []
    for term in terms:
        if term.key == "experiment_id":
            keys.append(SortKey(_EXPERIMENT_ID_NUMBER, term.ascending))
        else:
            keys.append(SortKey(EXPERIMENT_ATTRIBUTE_FIELDS[term.key], term.ascending))
    if not any(t.key == "experiment_id" for t in terms):
        keys.append(SortKey(_EXPERIMENT_ID_NUMBER, False))
    keys.append(SortKey("_id", True, nullable=False))
    computed = {_EXPERIMENT_ID_NUMBER: {"$convert": {"input": "$_id", "to": "long", "onError": None, "onNull": None}}}
    return SortPlan(computed, keys)


# --- logged models -----------------------------------------------------------------------------
#
# A logged model document embeds its metrics as a list of entries {key, value, nan, timestamp,
# step, run_id, dataset_name, dataset_digest, ...} (every point logged with its model_id).

MODEL_ATTRIBUTE_FIELDS = {
    "model_id": "_id", "name": "name", "experiment_id": "experiment_id", "artifact_location": "artifact_location",
    "creation_timestamp_ms": "creation_timestamp_ms", "last_updated_timestamp_ms": "last_updated_timestamp_ms",
    "status": "status", "lifecycle_stage": "lifecycle_stage", "model_type": "model_type",
    "source_run_id": "source_run_id", "status_message": "status_message",
}
# Stored status names in the SQL store's integer order (LoggedModelStatus.to_int).
MODEL_STATUSES = ["LOGGED_MODEL_STATUS_UNSPECIFIED", "LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY",
                  "LOGGED_MODEL_UPLOAD_FAILED"]
# A status in a filter may be the stored (proto) name, the client's LoggedModelStatus value
# (what the file store compares with) or the SQL store's integer.
_STATUS_NAMES = {
    **{name: name for name in MODEL_STATUSES},
    **{short: name for short, name in zip(["UNSPECIFIED", "PENDING", "READY", "FAILED"], MODEL_STATUSES)},
    **{str(i): name for i, name in enumerate(MODEL_STATUSES)},
}
_ALWAYS_SET_MODEL_FIELDS = frozenset({"model_id", "name", "creation_timestamp_ms", "last_updated_timestamp_ms"})
_MODEL_METRIC_LATEST_FIRST = {"timestamp": -1, "step": -1, "run_id": 1}


def _status_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_STATUS_NAMES.get(v, v) for v in value)
    return _STATUS_NAMES.get(value, value)


def model_dataset_condition(datasets: list[tuple[str, str | None]]) -> dict[str, Any]:
    """A metric entry on any of `datasets` ((name, digest or None for any digest))."""
    return {"$or": [{"dataset_name": name, **({"dataset_digest": digest} if digest else {})}
                    for name, digest in datasets]}


def _model_metric_clause(clause: Clause, datasets: list[tuple[str, str | None]]) -> dict[str, Any]:
    """Some metric entry of the model with this key (on one of `datasets`, if given) satisfies the
    comparison, as the SQL store's join on logged_model_metrics does. NaN compares only with `!=`."""
    if clause.comparator == "!=":
        value: dict[str, Any] = {"$or": [{"value": {"$ne": clause.value}}, {"nan": True}]}
    else:
        value = {"value": {MONGO_OPS[clause.comparator]: clause.value}, "nan": {"$ne": True}}
    conditions = [value, model_dataset_condition(datasets)] if datasets else [value]
    # A field first: some wire servers read an $elemMatch that starts with an operator as a value match.
    return {"metrics": {"$elemMatch": {"key": clause.key, "$and": conditions}}}


def model_clause(clause: Clause, datasets: list[tuple[str, str | None]]) -> dict[str, Any]:
    if clause.kind == METRIC:
        return _model_metric_clause(clause, datasets)
    if clause.kind in (PARAM, TAG):
        return {entity_path(clause.kind, clause.key): string_condition(clause.comparator, clause.value)}
    field = MODEL_ATTRIBUTE_FIELDS[clause.key]
    if clause.key in ("creation_timestamp_ms", "last_updated_timestamp_ms"):
        return {field: numeric_condition(clause.comparator, clause.value)}  # type: ignore[arg-type]
    value = clause.value
    if clause.key == "status" and clause.comparator not in ("LIKE", "ILIKE"):
        value = _status_value(value)  # LIKE patterns match the stored names as they are
    return {field: string_condition(clause.comparator, value)}


def model_filter(experiment_ids: list[str], clauses: list[Clause],
                 datasets: list[tuple[str, str | None]]) -> dict[str, Any]:
    """The `$match` of a logged-models search: active models of the experiments, then the clauses.
    Datasets without a metric clause still require a metric entry on one of them (as the SQL store)."""
    query: dict[str, Any] = {"experiment_id": {"$in": experiment_ids}, "lifecycle_stage": "active"}
    conditions = [model_clause(c, datasets) for c in clauses]
    if datasets and not any(c.kind == METRIC for c in clauses):
        names = sorted({name for name, _ in datasets})
        conditions.append({"metrics": {"$elemMatch": {"dataset_name": {"$in": names},
                                                      **model_dataset_condition(datasets)}}})
    if conditions:
        query["$and"] = conditions
    return query


def _latest_model_metric(term: ModelOrderTerm) -> dict[str, Any]:
    """The model's latest entry (timestamp, then step; lowest run_id on ties) for the term's key and
    dataset, like the SQL store's row_number() window; missing when the model has none."""
    conditions = [{"$eq": ["$$m.key", {"$literal": term.key}]}]
    if term.dataset_name:
        conditions.append({"$eq": ["$$m.dataset_name", {"$literal": term.dataset_name}]})
    if term.dataset_digest:
        conditions.append({"$eq": ["$$m.dataset_digest", {"$literal": term.dataset_digest}]})
    entries = {"$filter": {"input": {"$ifNull": ["$metrics", []]}, "as": "m", "cond": {"$and": conditions}}}
    return {"$first": {"$sortArray": {"input": entries, "sortBy": _MODEL_METRIC_LATEST_FIRST}}}


def _model_metric_sort_fields(term: ModelOrderTerm) -> tuple[dict[str, Any], dict[str, Any]]:
    """(flag, value) as for runs: values (0), then NaN (1), then models without the metric (2)."""
    latest = _latest_model_metric(term)
    is_nan = {"$eq": ["$$latest.nan", True]}
    flag = {"$cond": [{"$eq": [{"$ifNull": ["$$latest", None]}, None]}, 2, {"$cond": [is_nan, 1, 0]}]}
    value = {"$cond": [is_nan, None, {"$ifNull": ["$$latest.value", None]}]}
    return ({"$let": {"vars": {"latest": latest}, "in": flag}},
            {"$let": {"vars": {"latest": latest}, "in": value}})


def _model_attribute_sort_value(key: str) -> dict[str, Any]:
    if key == "status":  # the SQL store orders its integer status
        return {"$indexOfArray": [MODEL_STATUSES, "$status"]}
    if key == "experiment_id":  # an INTEGER column in the SQL store
        return {"$convert": {"input": "$experiment_id", "to": "long", "onError": None, "onNull": None}}
    return {"$ifNull": [f"${MODEL_ATTRIBUTE_FIELDS[key]}", None]}


def model_sort_plan(terms: list[ModelOrderTerm]) -> SortPlan:
    """The SQL store's order: each term with nulls last, then creation_timestamp DESC and model_id
    unless the terms already name them."""
    computed: dict[str, Any] = {}
    keys: list[SortKey] = []
    for i, term in enumerate(terms):
        if term.kind == ATTRIBUTE and term.key in _ALWAYS_SET_MODEL_FIELDS:
            keys.append(SortKey(MODEL_ATTRIBUTE_FIELDS[term.key], term.ascending, nullable=False))
            continue
        flag_field, value_field = f"_o{i}f", f"_o{i}v"
        if term.kind == METRIC:
            computed[flag_field], computed[value_field] = _model_metric_sort_fields(term)
        else:
            value = _model_attribute_sort_value(term.key)
            computed[flag_field] = {"$cond": [{"$eq": [value, None]}, 1, 0]}
            computed[value_field] = value
        keys.append(SortKey(flag_field, True, nullable=False))
        keys.append(SortKey(value_field, term.ascending))
    named = {k.field for k in keys}
    if "creation_timestamp_ms" not in named:
        keys.append(SortKey("creation_timestamp_ms", False, nullable=False))
    if "_id" not in named:
        keys.append(SortKey("_id", True, nullable=False))
    return SortPlan(computed, keys)
