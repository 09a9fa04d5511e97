"""Typed search clauses -> MongoDB query documents and sort plans over the stored layout.

Safety rests on two rules, both enforced here:

* field paths are built only from fixed attribute names or `encode_key(key)` under the `metrics`,
  `params` and `tags` maps (encoding removes `.` and `$`, so a key cannot climb out of its map or
  become an operator);
* user text is only ever a *value*: a string or number compared for equality/order, or a LIKE
  pattern turned into a regex whose literal parts are escaped. No user text becomes a regex, an
  operator, or part of an aggregation expression (where a leading `$` would be a field path).

Semantics follow MLflow's SQL store: a clause on a param/tag/metric only matches runs that have
it (`!=` included); NaN metrics never satisfy a numeric comparison except `!=`; sorting puts
missing values (and NaN metrics) last in both directions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from common.keys import encode_key
from query.filters import ATTRIBUTE, DATASET, METRIC, PARAM, TAG, Clause, OrderTerm

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


def run_filter(experiment_ids: list[str], stages: list[str], clauses: list[Clause]) -> dict[str, Any]:
    """The `$match` of a runs search: experiments and lifecycle first (the index prefix), then clauses."""
    query: dict[str, Any] = {"experiment_id": {"$in": experiment_ids}, "lifecycle_stage": {"$in": stages}}
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


def run_sort_plan(terms: list[OrderTerm]) -> SortPlan:
    computed: dict[str, Any] = {}
    keys: list[SortKey] = []
    for i, term in enumerate(terms):
        if term.kind == ATTRIBUTE and term.key in ("start_time", "run_id"):
            # always set: sort the stored field, so an index can serve it
            keys.append(SortKey(RUN_ATTRIBUTE_FIELDS[term.key], term.ascending, nullable=False))
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
