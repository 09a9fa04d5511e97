"""Trace reads: trace info, traces with their spans (one and many), search, assessments.

The search grammar follows `SearchTraceUtils` (attributes, tags, metadata, span name/type/status,
run id; order_by; offset page tokens like the reference's). The parse reuses the scanner of
`query/filters.py`, so no filter text reaches MongoDB except as typed values.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from common import traces as tr
from common import validation as v
from common.artifacts import safe_relative_path
from common.errors import INVALID_STATE, MlflowError
from common.keys import encode_key
from common.mongo import TRACE_SPANS, TRACES
from common.requests import parse_json_body
from common.web import json_response
from query.filters import (
    _parse_comparisons,
    _parse_order_by,
    _set_repr,
    _strip_quotes,
    _trim_backticks,
    invalid,
)
from query.translate import numeric_condition, string_condition

INFO_PROJECTION = {"sp": 0, "finalized": 0, "runs": 0, "as": 0, "prompts": 0}

# --- search grammar (SearchTraceUtils) -----------------------------------------------------------

_ENTITIES = {"tag": "tag", "tags": "tag", "attribute": "attribute", "attributes": "attribute",
             "trace": "attribute", "request_metadata": "metadata", "metadata": "metadata", "span": "span",
             "feedback": "feedback", "expectation": "expectation", "issue": "issue"}
_NUMERIC = {"timestamp": "request_time", "timestamp_ms": "request_time", "execution_time": "execution_duration",
            "execution_time_ms": "execution_duration", "end_time": None, "end_time_ms": None}
_STRING = {"status": "state", "request_id": "_id", "client_request_id": "client_request_id",
           "name": f"tags.{encode_key(tr.TRACE_NAME_TAG)}", "run_id": None}
_VALID_ATTRIBUTES = set(_NUMERIC) | set(_STRING) | {"prompt", "text"}
_SPAN_FIELDS = {"name": "sp.names", "type": "sp.types", "status": "sp.statuses"}
_STRING_OPS = {"=", "!=", "IN", "NOT IN", "LIKE", "ILIKE", "RLIKE"}
_KEYED_OPS = {"=", "!=", "LIKE", "ILIKE", "RLIKE", "IS NULL", "IS NOT NULL"}
_ORDER_FIELDS = {"timestamp": "request_time", "timestamp_ms": "request_time", "execution_time": "execution_duration",
                 "execution_time_ms": "execution_duration", "status": "state", "request_id": "_id",
                 "experiment_id": "experiment_id", "name": f"tags.{encode_key(tr.TRACE_NAME_TAG)}",
                 "run_id": f"metadata.{encode_key(tr.SOURCE_RUN_METADATA)}"}
_RUN_PATH = f"metadata.{encode_key(tr.SOURCE_RUN_METADATA)}"


def _split_identifier(raw: str) -> tuple[str, str]:
    if "." in raw and not raw.startswith(("`", '"')):
        entity, key = raw.split(".", 1)
        kind = _ENTITIES.get(entity.strip())
        if kind is None:
            raise invalid(f"Invalid entity type '{entity}'. Valid values are {_set_repr(set(_ENTITIES))}")
    else:
        kind, key = "attribute", raw
    return kind, _trim_backticks(_strip_quotes(key.strip()))


def _literal(comp: Any, kind: str) -> Any:
    lit = comp.value
    if lit is None:
        return None
    if lit.kind == "list":
        return tuple(lit.value)
    if lit.kind == "number":
        text = str(lit.value)
        return int(text) if text.lstrip("-").isdigit() else float(text)
    return str(lit.value)


def _string_clause(path: str, comparator: str, value: Any, what: str) -> dict[str, Any]:
    if comparator not in _STRING_OPS:
        raise invalid(f"Invalid comparator '{comparator}' for {what}. Valid comparators are {sorted(_STRING_OPS)}")
    if (comparator in ("IN", "NOT IN")) != isinstance(value, tuple):
        raise invalid(f"Invalid value {value!r} for comparator '{comparator}' on {what}.")
    if not isinstance(value, (str, tuple)):
        raise invalid(f"Expected a quoted string value for {what}, got {value!r}.")
    return {path: _string_condition(comparator, value)}


def _string_condition(comparator: str, value: Any) -> Any:
    if comparator == "RLIKE":  # a regular expression, matched anywhere (as SQL's REGEXP)
        try:
            re.compile(value)
        except re.error as exc:
            raise invalid(f"Invalid regular expression {value!r}: {exc}") from None
        return {"$regex": value}
    return string_condition(comparator, value)


def _keyed_clause(path: str, comparator: str, value: Any, what: str) -> dict[str, Any]:
    if comparator not in _KEYED_OPS:
        raise invalid(f"Invalid comparator '{comparator}' for {what}. Valid comparators are {sorted(_KEYED_OPS)}")
    if comparator == "IS NULL":
        return {path: None}
    if comparator == "IS NOT NULL":
        return {path: {"$ne": None}}
    if not isinstance(value, str):
        raise invalid(f"Expected a quoted string value for {what}, got {value!r}.")
    return {path: _string_condition(comparator, value)}


_ASSESSMENT_OPS = {"!=", "=", ">", ">=", "<", "<=", "LIKE", "ILIKE", "RLIKE", "IS NULL", "IS NOT NULL"}


def _assessment_clause(kind: str, name: str, comparator: str, value: Any) -> dict[str, Any]:
    """`feedback.<name>` / `expectation.<name>`: a valid assessment of that name whose value (as
    JSON text; a string matches with or without its quotes) compares; IS [NOT] NULL: whether one
    exists."""
    if not name:
        raise invalid("Assessment field name cannot be empty")
    if comparator not in _ASSESSMENT_OPS:
        raise invalid(f"assessment.{name} comparator '{comparator}' not one of '{_set_repr(_ASSESSMENT_OPS)}'")
    match: dict[str, Any] = {"t": kind, "n": name, "ok": True}
    if comparator == "IS NULL":
        return {"as": {"$not": {"$elemMatch": match}}}
    if comparator in (">", ">=", "<", "<="):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise invalid(f"Invalid numeric value {value!r} for assessment '{name}'.") from None
        match["x"] = numeric_condition(comparator, number)
    elif comparator in ("=", "!="):
        text = value if isinstance(value, str) else json.dumps(value)
        forms = [text, json.dumps(text)]
        match["v"] = {"$in": forms} if comparator == "=" else {"$nin": forms}
    elif comparator != "IS NOT NULL":
        if not isinstance(value, str):
            raise invalid(f"Expected a quoted string value for assessment '{name}', got {value!r}.")
        match["v"] = _string_condition(comparator, value)
    return {"as": {"$elemMatch": match}}


def _clause(comp: Any) -> dict[str, Any]:
    kind, key = _split_identifier(comp.identifier)
    comparator = comp.comparator
    value = _literal(comp, kind)
    if kind == "tag":
        return _keyed_clause(f"tags.{encode_key(key)}", comparator, value, "tag")
    if kind == "metadata":
        return _keyed_clause(f"metadata.{encode_key(key)}", comparator, value, "request metadata")
    if kind == "span":
        path = _SPAN_FIELDS.get(key)
        if path is None:
            raise invalid(f"Invalid span attribute '{key}'. Supported attributes are {sorted(_SPAN_FIELDS)}")
        if comparator == "!=":
            return {path: {"$elemMatch": {"$ne": value}}}
        return _string_clause(path, comparator, value, f"span.{key}")
    if kind in ("feedback", "expectation"):
        return _assessment_clause(kind, key, comparator, value)
    if kind != "attribute":
        raise invalid(f"Searching traces by '{kind}' is not supported by this server.")
    if key not in _VALID_ATTRIBUTES:
        raise invalid(f"Invalid attribute key '{key}' specified. Valid keys are '{_set_repr(_VALID_ATTRIBUTES)}'")
    if key in _NUMERIC:
        if comparator not in ("=", "!=", ">", ">=", "<", "<="):
            raise invalid(f"Invalid comparator '{comparator}' for numeric attribute '{key}'.")
        if not isinstance(value, (int, float)):
            try:
                value = int(str(value))
            except ValueError:
                raise invalid(f"Invalid numeric value {value!r} for attribute '{key}'.") from None
        field = _NUMERIC[key]
        if field is None:  # end time: start + duration
            ops = {"=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}
            return {"execution_duration": {"$ne": None},
                    "$expr": {ops[comparator]: [{"$add": ["$request_time", "$execution_duration"]}, value]}}
        return {field: numeric_condition(comparator, value)}
    if key == "run_id":
        cond = _string_clause("x", comparator, value, "run_id")["x"]
        if comparator in ("!=", "NOT IN"):
            return {"$and": [{_RUN_PATH: cond}, {"runs": cond}]}
        return {"$or": [{_RUN_PATH: cond}, {"runs": cond}]}
    if key in ("prompt", "text"):
        raise invalid(f"Searching traces by '{key}' is not supported by this server.")
    if key == "status" and isinstance(value, str) and comparator in ("=", "!="):
        value = value.upper() if value.upper() in tr.STATES else value
    return _string_clause(_STRING[key], comparator, value, key)


def trace_filter(experiment_ids: list[str], text: str | None) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [{"experiment_id": {"$in": experiment_ids}}]
    if text and text.strip():
        conditions += [_clause(c) for c in _parse_comparisons(text)]
    return {"$and": conditions}


def trace_sort(order_by: list[str]) -> list[tuple[str, int]]:
    sort: list[tuple[str, int]] = []
    for text in order_by or []:
        identifier, ascending = _parse_order_by(text)
        kind, key = _split_identifier(identifier)
        if kind == "attribute":
            field = _ORDER_FIELDS.get(key)
        elif kind == "tag":
            field = f"tags.{encode_key(key)}"
        elif kind == "metadata":
            field = f"metadata.{encode_key(key)}"
        else:
            field = None
        if field is None:
            raise invalid(f"Invalid order_by entity `{identifier}` with key `{key}`")
        if field not in (f for f, _ in sort):
            sort.append((field, 1 if ascending else -1))
    if "request_time" not in (f for f, _ in sort):
        sort.append(("request_time", -1))
    if "_id" not in (f for f, _ in sort):
        sort.append(("_id", 1))
    return sort


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.b64decode(token))["offset"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError
        return offset
    except (ValueError, TypeError, KeyError):  # binascii.Error and JSONDecodeError are ValueErrors
        raise MlflowError.invalid("Invalid page token, could not base64-decode") from None


def _token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


# --- reads -------------------------------------------------------------------------------------


async def _doc(db: AsyncDatabase, trace_id: str) -> dict[str, Any]:
    doc = await db[TRACES].find_one({"_id": trace_id}, INFO_PROJECTION)
    if doc is None:
        raise tr.trace_not_found(trace_id)
    return doc


async def _spans(db: AsyncDatabase, trace_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    buckets: dict[str, list[dict[str, Any]]] = {t: [] for t in trace_ids}
    async for bucket in db[TRACE_SPANS].find({"trace_id": {"$in": trace_ids}}):
        buckets.setdefault(bucket["trace_id"], []).append(bucket)
    return {t: [tr.span_json(s) for s in tr.span_entries(bs)] for t, bs in buckets.items()}


async def get_trace_info(db: AsyncDatabase, trace_id: str) -> dict[str, Any]:
    return {"trace": {"trace_info": tr.trace_info(await _doc(db, trace_id))}}


PARTIAL_RETRY_DELAYS_S = (1.0, 2.0)  # the reference's waits before it calls a trace incomplete


async def get_trace(db: AsyncDatabase, trace_id: str, allow_partial: bool = False) -> dict[str, Any]:
    """A trace with its spans. Without `allow_partial`, a trace stored with its spans here that has
    none yet, or fewer than start_trace said, is not answered until complete (or the reference's
    retries run out: then 404 'not fully exported')."""
    for delay in (*PARTIAL_RETRY_DELAYS_S, None):
        doc = await db[TRACES].find_one({"_id": trace_id}, INFO_PROJECTION)
        if doc is None:
            raise MlflowError.not_found(f"Trace with ID {trace_id} is not found.")
        spans = (await _spans(db, [trace_id]))[trace_id]
        in_store = (doc.get("tags") or {}).get(encode_key(tr.SPANS_LOCATION_TAG)) == tr.SPANS_LOCATION_TRACKING_STORE
        expected = tr.expected_span_count(doc) or 0
        if not in_store:
            raise MlflowError("Trace data not stored in tracking store", INVALID_STATE)
        if allow_partial or (spans and len(spans) >= expected):
            return {"trace": {"trace_info": tr.trace_info(doc), "spans": spans}}
        if delay is not None:
            await asyncio.sleep(delay)
    raise MlflowError.not_found(f"Trace with ID {trace_id} is not fully exported yet, please try again later.")


async def batch_get(db: AsyncDatabase, trace_ids: list[str], with_spans: bool) -> list[dict[str, Any]]:
    docs = {d["_id"]: d async for d in db[TRACES].find({"_id": {"$in": trace_ids}}, INFO_PROJECTION)}
    found = [t for t in dict.fromkeys(trace_ids) if t in docs]
    if not with_spans:
        return [tr.trace_info(docs[t]) for t in found]
    spans = await _spans(db, found)
    return [{"trace_info": tr.trace_info(docs[t]), "spans": spans[t]} for t in found]


async def search_traces(db: AsyncDatabase, body: dict[str, Any],
                        render: Callable[[dict[str, Any]], dict[str, Any]] = tr.trace_info) -> dict[str, Any]:
    v.check_fields(body, {"locations": (v.ARRAY, v.REQUIRED), "filter": (v.STRING,),
                          "max_results": (v.INTLIKE, lambda x: int(x) <= tr.MAX_RESULTS_PER_PAGE),
                          "order_by": (v.ARRAY,), "page_token": (v.STRING,)})
    experiment_ids = []
    for loc in body["locations"]:
        exp = (loc or {}).get("mlflow_experiment") if isinstance(loc, dict) else None
        if isinstance(exp, dict) and isinstance(exp.get("experiment_id"), str):
            experiment_ids.append(exp["experiment_id"])
    max_results = int(body.get("max_results") or tr.DEFAULT_RESULTS_PER_PAGE)
    if max_results < 1:
        raise MlflowError.invalid(f"Invalid value {max_results} for parameter 'max_results' supplied: "
                                  "it must be a positive integer.")
    query = trace_filter(experiment_ids, body.get("filter"))
    sort = trace_sort([str(o) for o in body.get("order_by") or []])
    offset = _offset(body.get("page_token"))
    docs = await db[TRACES].find(query, INFO_PROJECTION).sort(sort).skip(offset).limit(max_results).to_list(None)
    out: dict[str, Any] = {"traces": [render(d) for d in docs]} if docs else {}
    if len(docs) == max_results:
        out["next_page_token"] = _token(offset + len(docs))
    return out


async def trace_data(db: AsyncDatabase, trace_id: str) -> bytes:
    """`get-trace-artifact` (the UI): the trace's spans as MLflow's `TraceData.to_json_bytes()`."""
    if await db[TRACES].find_one({"_id": trace_id}, {"_id": 1}) is None:
        raise MlflowError.not_found(f"Trace with ID {trace_id} is not found.")
    buckets = await db[TRACE_SPANS].find({"trace_id": trace_id}).to_list(None)
    return json.dumps({"spans": tr.span_entries(buckets)}, ensure_ascii=False).encode()


async def search_traces_v2(db: AsyncDatabase, query: Any) -> dict[str, Any]:
    """The v2 search (`GET traces?experiment_ids=...`): the same grammar, v2 trace infos."""
    max_results = query.get("max_results")
    try:
        limit = int(max_results) if max_results else tr.DEFAULT_RESULTS_PER_PAGE
    except ValueError:
        raise MlflowError.invalid(f"Invalid value {max_results!r} for parameter 'max_results' supplied.") from None
    body = {"locations": [{"mlflow_experiment": {"experiment_id": e}} for e in query.getall("experiment_ids", [])],
            "filter": query.get("filter"), "max_results": limit, "order_by": query.getall("order_by", []),
            "page_token": query.get("page_token")}
    found = await search_traces(db, {k: val for k, val in body.items() if val is not None}, render=tr.trace_info_v2)
    return found


# --- trace metrics (the UI's overview and traces pages) ------------------------------------------

_METRIC_FIELDS = {("TRACES", "trace_count"): None, ("TRACES", "latency"): "execution_duration",
                  ("SPANS", "span_count"): None}
_METRIC_AGGREGATIONS = {"trace_count": ("COUNT",), "span_count": ("COUNT",),
                        "latency": ("AVG", "MAX", "MIN", "PERCENTILE")}
_DIMENSIONS = {"trace_name": lambda d: (d.get("tags") or {}).get(encode_key(tr.TRACE_NAME_TAG)),
               "trace_status": lambda d: d.get("state")}


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, as the reference computes)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _aggregate(kind: str, values: list[float], percentile: float | None) -> tuple[str, float | None]:
    if kind == "COUNT":
        return "COUNT", float(len(values))
    if not values:
        return kind, None
    if kind == "PERCENTILE":
        return f"P{float(percentile or 0)}", float(_percentile(values, float(percentile or 0)))
    return kind, float({"SUM": sum, "AVG": lambda xs: sum(xs) / len(xs), "MIN": min, "MAX": max}[kind](values))


async def query_trace_metrics(db: AsyncDatabase, body: dict[str, Any]) -> dict[str, Any]:
    """QueryTraceMetrics for what a tracking store of traces can answer from trace documents:
    trace counts and latency (TRACES) and span counts (SPANS), by trace name, status and time
    bucket, within a time range and the search grammar's filters."""
    v.check_fields(body, {"experiment_ids": (v.ARRAY, v.REQUIRED), "view_type": (v.STRING,),
                          "metric_name": (v.STRING, v.REQUIRED), "aggregations": (v.ARRAY,), "dimensions": (v.ARRAY,),
                          "filters": (v.ARRAY,), "time_interval_seconds": (v.INTLIKE,),
                          "start_time_ms": (v.INTLIKE,), "end_time_ms": (v.INTLIKE,)})
    view, metric = body.get("view_type") or "TRACES", body["metric_name"]
    if (view, metric) not in _METRIC_FIELDS:
        if view == "TRACES" and metric.endswith("_tokens"):
            return {}  # no token usage recorded: no data points, as the reference answers
        raise invalid(f"Metric '{metric}' of view type '{view}' is not supported by this server.")
    dimensions = [str(d) for d in body.get("dimensions") or []]
    for dim in dimensions:
        if dim not in _DIMENSIONS:
            raise invalid(f"Dimension '{dim}' is not supported by this server.")
    query = trace_filter([str(e) for e in body["experiment_ids"]], None)
    for text in body.get("filters") or []:
        query["$and"] += trace_filter([], str(text))["$and"][1:]
    window: dict[str, int] = {}
    if body.get("start_time_ms") is not None:
        window["$gte"] = int(body["start_time_ms"])
    if body.get("end_time_ms") is not None:
        window["$lt"] = int(body["end_time_ms"])
    if window:
        query["$and"].append({"request_time": window})
    interval = int(body.get("time_interval_seconds") or 0) * 1000
    if interval and not ("$gte" in window and "$lt" in window):
        raise invalid("start_time_ms and end_time_ms are required if time_interval_seconds is set")
    aggregations = body.get("aggregations") or [{"aggregation_type": "COUNT"}]
    kinds = [a.get("aggregation_type") if isinstance(a, dict) else a for a in aggregations]
    supported = _METRIC_AGGREGATIONS[metric]
    if bad := [k for k in kinds if k not in supported]:
        raise invalid(f"Found invalid aggregation_type(s): {bad}. Supported aggregation types: {list(supported)}")
    field = _METRIC_FIELDS[(view, metric)]
    groups: dict[tuple, list[float]] = {}
    async for doc in db[TRACES].find(query, {"request_time": 1, "execution_duration": 1, "state": 1,
                                             f"tags.{encode_key(tr.TRACE_NAME_TAG)}": 1, "sp.n": 1}):
        key = tuple(_DIMENSIONS[d](doc) for d in dimensions)
        if None in key:
            continue  # the reference groups by joined values: a trace without one is left out
        if interval:
            key += (int(doc.get("request_time") or 0) // interval * interval,)
        bucket = groups.setdefault(key, [])
        if view == "SPANS":
            bucket.extend([1.0] * int((doc.get("sp") or {}).get("n") or 0))
        elif field is None:
            bucket.append(1.0)
        elif doc.get(field) is not None:
            bucket.append(float(doc[field]))
    if not groups and not dimensions and not interval and "COUNT" in kinds:
        groups[()] = []  # a count over nothing is a zero, not an absent point
    points = []
    for key in sorted(groups, key=lambda k: tuple("" if x is None else str(x) for x in k)):
        values = {}
        for agg in aggregations:
            name, value = _aggregate(agg["aggregation_type"], groups[key], agg.get("percentile_value"))
            if value is not None:
                values[name] = value
        point: dict[str, Any] = {"metric_name": metric}
        dims = {d: key[i] for i, d in enumerate(dimensions)}
        if interval:
            dims["time_bucket"] = dt.datetime.fromtimestamp(key[-1] / 1000, dt.UTC).isoformat()
        if dims:
            point["dimensions"] = dims
        point["values"] = values
        points.append(point)
    return {"data_points": points} if points else {}


async def get_assessment(db: AsyncDatabase, trace_id: str, assessment_id: str) -> dict[str, Any]:
    safe = tr.safe_assessment_id(assessment_id)
    doc = await db[TRACES].find_one({"_id": trace_id}, {f"assessments.{assessment_id}": 1} if safe else {"_id": 1})
    if doc is None:
        raise tr.trace_not_found(trace_id)
    found = (doc.get("assessments") or {}).get(assessment_id) if safe else None
    if found is None:
        raise tr.assessment_not_found(trace_id, assessment_id)
    return {"assessment": found}


# --- routes --------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
V3 = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")


def _message(request: web.Request, raw: bytes) -> dict[str, Any]:
    if request.method == "GET" and request.query:
        return {k: (request.query.getall(k) if k == "trace_ids" else request.query.get(k)) for k in request.query}
    return parse_json_body(raw)


def trace_routes(db: AsyncDatabase) -> list[tuple[str, str, Handler]]:
    """(method, full path, handler) for every trace read. Fixed paths come before
    `traces/{trace_id}`, so `traces/get` is never read as a trace id."""

    async def info(request: web.Request) -> web.Response:
        return json_response(await get_trace_info(db, request.match_info["trace_id"]))

    async def get(request: web.Request) -> web.Response:
        body = _message(request, await request.read())
        trace_id = body.get("trace_id")
        if not isinstance(trace_id, str) or not trace_id:
            raise MlflowError.invalid("Missing value for required parameter 'trace_id'.")
        partial = body.get("allow_partial")
        return json_response(await get_trace(db, trace_id, partial is True or str(partial).lower() == "true"))

    def batch(with_spans: bool) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            body = _message(request, await request.read())
            ids = body.get("trace_ids") or []
            ids = [ids] if isinstance(ids, str) else [str(i) for i in ids]
            found = await batch_get(db, ids, with_spans)
            return json_response({"traces": found} if with_spans else {"trace_infos": found})
        return handler

    async def search(request: web.Request) -> web.Response:
        return json_response(await search_traces(db, parse_json_body(await request.read())))

    async def metrics(request: web.Request) -> web.Response:
        return json_response(await query_trace_metrics(db, parse_json_body(await request.read())))

    async def assessment(request: web.Request) -> web.Response:
        return json_response(await get_assessment(db, request.match_info["trace_id"],
                                                  request.match_info["assessment_id"]))

    async def artifact(request: web.Request) -> web.StreamResponse:
        trace_id = request.query.get("request_id")
        if not trace_id:
            raise MlflowError('Request must include the "request_id" query parameter.', "BAD_REQUEST")
        path = request.query.get("path")
        if path:
            safe_relative_path(path)
            try:
                uuid.UUID(path)
            except ValueError:
                raise MlflowError.invalid(
                    f"Invalid attachment path: '{path}'. Attachment path must be a valid UUID.") from None
            await _doc(db, trace_id)
            raise MlflowError.not_found(f"Attachment '{path}' of trace '{trace_id}' not found.")
        return web.Response(body=await trace_data(db, trace_id), content_type="application/octet-stream",
                            headers={"Content-Disposition": 'attachment; filename="traces.json"'})

    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/ajax-api/2.0/mlflow/get-trace-artifact", artifact),
        ("GET", "/ajax-api/3.0/mlflow/get-trace-artifact", artifact),
    ]
    async def info_v2(request: web.Request) -> web.Response:
        return json_response({"trace_info": tr.trace_info_v2(await _doc(db, request.match_info["trace_id"]))})

    async def search_v2(request: web.Request) -> web.Response:
        return json_response(await search_traces_v2(db, request.query))

    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        routes += [("GET", f"{prefix}/traces/{{trace_id}}/info", info_v2), ("GET", f"{prefix}/traces", search_v2)]
    for prefix in V3:
        routes += [
            ("GET", f"{prefix}/traces/get", get),
            ("GET", f"{prefix}/traces/batchGet", batch(True)),
            ("GET", f"{prefix}/traces/batchGetInfos", batch(False)),
            ("POST", f"{prefix}/traces/batchGetInfos", batch(False)),
            ("POST", f"{prefix}/traces/search", search),
            ("POST", f"{prefix}/traces/metrics", metrics),
            ("GET", f"{prefix}/traces/{{trace_id}}/assessments/{{assessment_id}}", assessment),
            ("GET", f"{prefix}/traces/{{trace_id}}", info),
        ]
    return routes
