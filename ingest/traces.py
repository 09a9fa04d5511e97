"""Trace writes: OTLP span export (`POST /v1/traces`), start_trace, trace tags, deletes, links to
runs and assessments.

Same pattern as every write: validate what can be validated here, one event per trace through the
queue (spans of many traces in one export become one event per trace, published concurrently),
answer after the commit. Reads of MongoDB only refuse early (unknown trace or experiment) and
answer with the committed entity, as the reference server does.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CollectorRegistry, Counter, Histogram
from pymongo.asynchronous.database import AsyncDatabase

from common import events as ev
from common import traces as tr
from common import traces_otlp as otlp
from common import validation as v
from common.clock import now_ms
from common.errors import MlflowError
from common.keys import encode_key
from common.mongo import TRACES
from common.requests import parse_json_body
from common.settings import AckMode
from common.web import json_response
from ingest.bus import ACK_HEADER, EventBus
from ingest.lookups import Lookups

EXPERIMENT_HEADER = "x-mlflow-experiment-id"
RUN_HEADER = "x-mlflow-run-id"
MAX_TAG_KEY_LENGTH, MAX_TAG_VALUE_LENGTH = 250, 8000
BLOCKED_TAGS = frozenset({tr.SPANS_LOCATION_TAG, "mlflow.trace.archiveLocation", "mlflow.trace.archivalFailure"})
MUTABLE_ON_DELETE = frozenset({"mlflow.trace.archivalFailure"})
_EXPERIMENT_CACHE_S = 5.0
MAX_CONCURRENT_TRACES = 256  # events of one export in flight at once (the bus bounds all requests')
_ASSESSMENT_ORDER = ("assessment_id", "assessment_name", "trace_id", "span_id", "source", "create_time",
                     "last_update_time", "expectation", "feedback", "rationale", "metadata", "overrides", "valid")
_MASK_FIELDS = {"assessmentName": "assessment_name", "assessment_name": "assessment_name",
                "expectation": "expectation", "feedback": "feedback", "rationale": "rationale",
                "metadata": "metadata", "valid": "valid"}

R, S, A, I = v.REQUIRED, v.STRING, v.ARRAY, v.INTLIKE


def _ordered(assessment: dict[str, Any]) -> dict[str, Any]:
    out = {k: assessment[k] for k in _ASSESSMENT_ORDER if k in assessment}
    out.update({k: val for k, val in assessment.items() if k not in out})
    return out


def _otlp_error(status: int, detail: Any) -> web.Response:
    return json_response({"detail": detail}, status=status)


class TraceMetrics:
    """Our own trace path on /metrics: OTLP requests by answer, spans accepted, spans per export."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter("genesis_ingest_otlp_requests", "OTLP trace export requests by HTTP status",
                                ["status"], registry=registry)
        self.spans = Counter("genesis_ingest_trace_spans", "Spans accepted (acknowledged) from OTLP exports",
                             registry=registry)
        self.spans_per_request = Histogram("genesis_ingest_otlp_spans_per_request", "Spans in one OTLP export",
                                           buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
                                           registry=registry)


class TraceService:
    def __init__(self, db: AsyncDatabase, bus: EventBus, lookups: Lookups, default_ack: AckMode,
                 metrics: TraceMetrics):
        self._db = db
        self._bus = bus
        self._lookups = lookups
        self._default_ack = default_ack
        self._metrics = metrics
        self._experiments: dict[str, tuple[float, str]] = {}  # id -> (checked at, artifact location)

    # --- shared checks ---------------------------------------------------------------------

    async def _experiment_location(self, experiment_id: str) -> str:
        """The active experiment's artifact location (cached briefly: OTLP exports are hot)."""
        hit = self._experiments.get(experiment_id)
        if hit is not None and time.monotonic() - hit[0] < _EXPERIMENT_CACHE_S:
            return hit[1]
        v.validate_experiment_id(experiment_id)
        exp = await self._lookups.experiment(experiment_id)
        if exp is None:
            raise MlflowError.not_found(f"No Experiment with id={experiment_id} exists")
        if exp.lifecycle_stage != "active":
            raise MlflowError.invalid(
                f"The experiment {experiment_id} must be in the 'active' state. "
                f"Current state is {exp.lifecycle_stage}.")
        self._experiments[experiment_id] = (time.monotonic(), exp.artifact_location)
        return exp.artifact_location

    async def _trace_doc(self, trace_id: str, projection: dict[str, int] | None = None) -> dict[str, Any]:
        doc = await self._db[TRACES].find_one({"_id": trace_id}, projection)
        if doc is None:
            raise tr.trace_not_found(trace_id)
        return doc

    # --- OTLP ------------------------------------------------------------------------------

    async def export(self, request: web.Request) -> web.Response:
        status = 500
        try:
            response = await self._export(request)
            status = response.status
            return response
        except MlflowError as exc:
            status = exc.http_status
            raise
        finally:
            self._metrics.requests.labels(str(status)).inc()

    async def _export(self, request: web.Request) -> web.Response:
        experiment_id = request.headers.get(EXPERIMENT_HEADER)
        if experiment_id is None:
            return _otlp_error(422, [{"type": "missing", "loc": ["header", EXPERIMENT_HEADER],
                                      "msg": "Field required", "input": None}])
        try:
            try:
                body = await request.read()
            except RequestPayloadError:
                # aiohttp could not undo the Content-Encoding; the rest of the body is unread, so
                # this connection cannot carry another request (a proxy must not reuse it).
                response = _otlp_error(400, "Failed to decompress payload with "
                                            f"{request.headers.get('Content-Encoding', '').lower()}")
                response.force_close()
                return response
            parsed = otlp.parse_request(body, request.headers.get("Content-Type"),
                                        request.headers.get("Content-Encoding"))
            groups = otlp.spans_by_trace(parsed)
        except otlp.OtlpError as exc:
            return _otlp_error(exc.status, exc.detail)
        ack = _ack_mode(request, self._default_ack)
        location = await self._experiment_location(experiment_id)
        for i in range(0, len(groups), MAX_CONCURRENT_TRACES):  # one event per trace, in bounded waves
            await asyncio.gather(*(self._bus.submit(ev.SpansLogged(
                g.trace_id, experiment_id, tr.artifact_location(location, g.trace_id), g.spans), ack)
                for g in groups[i:i + MAX_CONCURRENT_TRACES]))
        count = sum(len(g.spans) for g in groups)
        self._metrics.spans.inc(count)
        self._metrics.spans_per_request.observe(count)
        run_id = request.headers.get(RUN_HEADER)
        completed = [g.trace_id for g in groups if any(s.parent_id is None for s in g.spans)]
        if run_id and completed:
            try:
                await self._bus.submit(ev.TracesLinkedToRun(run_id, completed), ack)
            except MlflowError:
                pass  # the reference logs and goes on: the spans are stored
        return web.Response(body=otlp.EMPTY_RESPONSE, content_type="application/x-protobuf")

    # --- trace info ------------------------------------------------------------------------

    async def start_trace(self, body: dict[str, Any]) -> dict[str, Any]:
        info = ((body.get("trace") or {}).get("trace_info")) if isinstance(body.get("trace"), dict) else None
        if not isinstance(info, dict):
            raise MlflowError.invalid("Missing value for required parameter 'trace.trace_info'.")
        trace_id = info.get("trace_id")
        if not isinstance(trace_id, str) or not trace_id:
            raise MlflowError.invalid("Missing value for required parameter 'trace.trace_info.trace_id'.")
        location = info.get("trace_location") or {}
        experiment_id = ((location.get("mlflow_experiment") or {}).get("experiment_id")
                         if isinstance(location, dict) else None)
        if not isinstance(experiment_id, str):
            raise MlflowError.invalid("Missing value for required parameter 'trace.trace_info.trace_location'.")
        state = info.get("state") or "STATE_UNSPECIFIED"
        if state not in tr.STATES:
            raise MlflowError.invalid(f"Invalid value {state!r} for parameter 'trace.trace_info.state' supplied.")
        tags, metadata = _string_map(info.get("tags"), "tags"), _string_map(info.get("trace_metadata"), "trace_metadata")
        for key in tags:
            v.validate_tag_name(key)
            v.validate_length("key", MAX_TAG_KEY_LENGTH, key)
        artifact_root = await self._experiment_location(experiment_id)
        artifact_location = tr.artifact_location(artifact_root, trace_id)
        # `spansLocation` comes with the first stored span (the writer sets it): a client whose
        # start_trace finds none yet uploads the trace data to the artifact store instead.
        tags.pop(tr.SPANS_LOCATION_TAG, None)
        tags[tr.ARTIFACT_LOCATION_TAG] = artifact_location
        assessments = [json.dumps(_ordered({**a, "trace_id": trace_id, "assessment_id": a.get("assessment_id")
                                            if tr.safe_assessment_id(a.get("assessment_id"))
                                            else f"a-{uuid.uuid4().hex}"}))
                       for a in info.get("assessments") or [] if isinstance(a, dict)]
        duration = info.get("execution_duration")
        await self._bus.submit(ev.TraceStarted(
            trace_id, experiment_id, artifact_location,
            request_time=tr.parse_timestamp(info.get("request_time", 0), "request_time"), state=state,
            execution_duration=None if duration is None else tr.parse_duration(duration, "execution_duration"),
            request_preview=_opt_str(info.get("request_preview")), response_preview=_opt_str(info.get("response_preview")),
            client_request_id=_opt_str(info.get("client_request_id")),
            tags=[ev.Tag(k, val[:MAX_TAG_VALUE_LENGTH]) for k, val in tags.items()],
            metadata=[ev.Tag(k, val) for k, val in metadata.items()], assessments=assessments), "committed")
        return {"trace": {"trace_info": tr.trace_info(await self._trace_doc(trace_id, {"sp": 0}))}}

    # --- the v2 API (MLflow 2.x clients: spans go to the artifact store) -------------------------

    async def start_trace_v2(self, body: dict[str, Any]) -> dict[str, Any]:
        v.check_fields(body, {"experiment_id": (S,), "timestamp_ms": (I,), "request_metadata": (A,), "tags": (A,)})
        experiment_id = body.get("experiment_id") or ""
        artifact_root = await self._experiment_location(experiment_id)
        trace_id = uuid.uuid4().hex
        artifact_location = tr.artifact_location(artifact_root, trace_id)
        tags = _key_values(body.get("tags"), "tags") + [ev.Tag(tr.ARTIFACT_LOCATION_TAG, artifact_location)]
        await self._bus.submit(ev.TraceStarted(
            trace_id, experiment_id, artifact_location, request_time=int(body.get("timestamp_ms") or 0),
            state="IN_PROGRESS", execution_duration=0, tags=tags,
            metadata=_key_values(body.get("request_metadata"), "request_metadata"), mark_finalized=False), "committed")
        return {"trace_info": tr.trace_info_v2(await self._trace_doc(trace_id, {"sp": 0}))}

    async def end_trace_v2(self, trace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        v.check_fields(body, {"timestamp_ms": (I,), "status": (S,), "request_metadata": (A,), "tags": (A,)})
        doc = await self._trace_doc(trace_id, {"sp": 0, "assessments": 0})
        status = body.get("status") or "TRACE_STATUS_UNSPECIFIED"
        state = {"TRACE_STATUS_UNSPECIFIED": "STATE_UNSPECIFIED"}.get(status, status)
        if state not in tr.STATES:
            raise MlflowError.invalid(f"Invalid value {status!r} for parameter 'status' supplied.")
        location = (doc.get("tags") or {}).get(encode_key(tr.ARTIFACT_LOCATION_TAG), "")
        start = int(doc.get("request_time") or 0)  # PyMongo's Int64 is no plain int to msgspec
        await self._bus.submit(ev.TraceStarted(
            trace_id, doc["experiment_id"], location, request_time=start, state=state,
            execution_duration=int(body.get("timestamp_ms") or 0) - start,
            tags=_key_values(body.get("tags"), "tags"),
            metadata=_key_values(body.get("request_metadata"), "request_metadata"), mark_finalized=False), "committed")
        return {"trace_info": tr.trace_info_v2(await self._trace_doc(trace_id, {"sp": 0}))}

    # --- tags --------------------------------------------------------------------------------

    async def set_tag(self, trace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        v.check_fields(body, {"key": (S, R), "value": (S,)})
        key, value = body["key"], body.get("value") or ""
        if key in BLOCKED_TAGS:
            raise MlflowError.invalid(f"Tag '{key}' is immutable and cannot be set on a trace.")
        v.validate_tag_name(key)
        v.validate_length("key", MAX_TAG_KEY_LENGTH, key)
        await self._trace_doc(trace_id, {"_id": 1})
        await self._bus.submit(ev.TraceTagSet(trace_id, key, value[:MAX_TAG_VALUE_LENGTH]), "committed")
        return {}

    async def delete_tag(self, trace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        v.check_fields(body, {"key": (S, R)})
        key = body["key"]
        if key in BLOCKED_TAGS and key not in MUTABLE_ON_DELETE:
            raise MlflowError.invalid(f"Tag '{key}' is immutable and cannot be deleted on a trace.")
        doc = await self._trace_doc(trace_id, {"tags": 1})
        if encode_key(key) not in (doc.get("tags") or {}):
            raise MlflowError.not_found(f"No trace tag with key '{key}' for trace with ID '{trace_id}'")
        await self._bus.submit(ev.TraceTagDeleted(trace_id, key), "committed")
        return {}

    # --- deletes and links -------------------------------------------------------------------

    async def delete_traces(self, body: dict[str, Any]) -> dict[str, Any]:
        v.check_fields(body, {"experiment_id": (S, R), "max_timestamp_millis": (I,), "max_traces": (I,),
                              "request_ids": (A,)})
        experiment_id = body["experiment_id"]
        max_ts, max_traces = body.get("max_timestamp_millis"), body.get("max_traces")
        trace_ids = [str(t) for t in body.get("request_ids") or []]
        if max_ts is None and not trace_ids:
            raise MlflowError.invalid("Either `max_timestamp_millis` or `trace_ids` must be specified.")
        if max_ts is not None and trace_ids:
            raise MlflowError.invalid("Only one of `max_timestamp_millis` and `trace_ids` can be specified.")
        if trace_ids and max_traces is not None:
            raise MlflowError.invalid("`max_traces` can't be specified if `trace_ids` is specified.")
        if max_traces is not None and int(max_traces) <= 0:
            raise MlflowError.invalid(f"`max_traces` must be a positive integer, received {max_traces}.")
        query: dict[str, Any] = {"experiment_id": experiment_id}
        if trace_ids:
            query["_id"] = {"$in": trace_ids}
        else:
            query["request_time"] = {"$lte": int(max_ts)}
        cursor = self._db[TRACES].find(query, {"_id": 1}).sort([("request_time", 1), ("_id", 1)])
        if max_traces is not None:
            cursor = cursor.limit(int(max_traces))
        found = [d["_id"] async for d in cursor]
        for i in range(0, len(found), 1000):
            await self._bus.submit(ev.TracesDeleted(experiment_id, found[i:i + 1000]), "committed")
        return {"traces_deleted": len(found)}

    async def link_to_run(self, body: dict[str, Any]) -> dict[str, Any]:
        v.check_fields(body, {"trace_ids": (A, R), "run_id": (S, R)})
        trace_ids = [str(t) for t in body["trace_ids"]]
        if len(trace_ids) > 100:
            raise MlflowError.invalid(f"Cannot link more than 100 traces to a run in a single request. "
                                      f"Provided {len(trace_ids)} traces.")
        if trace_ids:
            await self._bus.submit(ev.TracesLinkedToRun(body["run_id"], trace_ids), "committed")
        return {}

    async def link_prompts(self, body: dict[str, Any]) -> dict[str, Any]:
        v.check_fields(body, {"trace_id": (S, R), "prompt_versions": (A, R)})
        prompts = [f"{pv.get('name')}/{pv.get('version')}" for pv in body["prompt_versions"] if isinstance(pv, dict)]
        if not prompts:
            return {}
        await self._trace_doc(body["trace_id"], {"_id": 1})
        await self._bus.submit(ev.TracePromptsLinked(body["trace_id"], prompts), "committed")
        return {}

    # --- assessments -------------------------------------------------------------------------

    async def create_assessment(self, trace_id: str, body: dict[str, Any]) -> dict[str, Any]:
        v.check_fields(body, {"assessment": (R,)})
        given = body["assessment"]
        if not isinstance(given, dict):
            raise MlflowError.invalid("Invalid value for parameter 'assessment' supplied.")
        if not given.get("assessment_name"):
            raise MlflowError.invalid("Missing value for required parameter 'assessment.assessment_name'.")
        if ("feedback" in given) == ("expectation" in given):
            raise MlflowError.invalid("Exactly one of 'expectation' or 'feedback' must be specified.")
        await self._trace_doc(trace_id, {"_id": 1})
        now = tr.timestamp_json(now_ms())
        assessment = _ordered({"create_time": now, "last_update_time": now, "valid": True, **given,
                               "assessment_id": f"a-{uuid.uuid4().hex}", "trace_id": trace_id})
        await self._bus.submit(ev.AssessmentSet(trace_id, assessment["assessment_id"], json.dumps(assessment)),
                               "committed")
        return {"assessment": assessment}

    async def _assessment(self, trace_id: str, assessment_id: str) -> dict[str, Any]:
        if not tr.safe_assessment_id(assessment_id):
            await self._trace_doc(trace_id, {"_id": 1})
            raise tr.assessment_not_found(trace_id, assessment_id)
        doc = await self._trace_doc(trace_id, {f"assessments.{assessment_id}": 1})
        found = (doc.get("assessments") or {}).get(assessment_id)
        if found is None:
            raise tr.assessment_not_found(trace_id, assessment_id)
        return found

    async def update_assessment(self, trace_id: str, assessment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        v.check_fields(body, {"assessment": (R,), "update_mask": (S,)})
        given = body["assessment"] if isinstance(body["assessment"], dict) else {}
        current = dict(await self._assessment(trace_id, assessment_id))
        mask = [f.strip() for f in (body.get("update_mask") or "").split(",") if f.strip()]
        for name in mask or [k for k in given if k in _MASK_FIELDS]:
            field = _MASK_FIELDS.get(name)
            if field is None:
                raise MlflowError.invalid(f"Invalid update mask field: {name}")
            if field in ("feedback", "expectation"):
                current.pop("feedback", None)
                current.pop("expectation", None)
            if field in given:
                current[field] = given[field]
            else:
                current.pop(field, None)
        current["last_update_time"] = tr.timestamp_json(now_ms())
        assessment = _ordered(current)
        await self._bus.submit(ev.AssessmentSet(trace_id, assessment_id, json.dumps(assessment)), "committed")
        return {"assessment": assessment}

    async def delete_assessment(self, trace_id: str, assessment_id: str) -> dict[str, Any]:
        await self._assessment(trace_id, assessment_id)
        await self._bus.submit(ev.AssessmentDeleted(trace_id, assessment_id), "committed")
        return {}


def _ack_mode(request: web.Request, default: AckMode) -> AckMode:
    value = request.headers.get(ACK_HEADER, default).strip().lower()
    return value if value in ("committed", "enqueued") else default  # type: ignore[return-value]


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _key_values(value: Any, field: str) -> list[ev.Tag]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(kv, dict) for kv in value):
        raise MlflowError.invalid(f"Invalid value for parameter '{field}' supplied.")
    return [ev.Tag(str(kv.get("key") or ""), str(kv.get("value") or "")) for kv in value]


def _string_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MlflowError.invalid(f"Invalid value for parameter '{field}' supplied.")
    return {str(k): val if isinstance(val, str) else json.dumps(val) for k, val in value.items()}


# --- routes ----------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
V2 = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
V3 = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")


def trace_routes(service: TraceService) -> list[tuple[str, str, Handler]]:
    """(method, full path, handler) for every trace write."""

    def body_only(call: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return json_response(await call(parse_json_body(await request.read())))
        return handler

    def for_trace(call: Callable[..., Awaitable[dict[str, Any]]], with_body: bool = True) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            args: list[Any] = [request.match_info["trace_id"]]
            if "assessment_id" in request.match_info:
                args.append(request.match_info["assessment_id"])
            if with_body:
                args.append(parse_json_body(await request.read()))
            return json_response(await call(*args))
        return handler

    s = service
    routes: list[tuple[str, str, Handler]] = [("POST", "/v1/traces", s.export)]
    for prefix in V3:
        routes += [
            ("POST", f"{prefix}/traces", body_only(s.start_trace)),
            ("POST", f"{prefix}/traces/delete-traces", body_only(s.delete_traces)),
            ("POST", f"{prefix}/traces/link-to-run", body_only(s.link_to_run)),
            ("PATCH", f"{prefix}/traces/{{trace_id}}/tags", for_trace(s.set_tag)),
            ("DELETE", f"{prefix}/traces/{{trace_id}}/tags", for_trace(s.delete_tag)),
            ("POST", f"{prefix}/traces/{{trace_id}}/assessments", for_trace(s.create_assessment)),
            ("PATCH", f"{prefix}/traces/{{trace_id}}/assessments/{{assessment_id}}", for_trace(s.update_assessment)),
            ("DELETE", f"{prefix}/traces/{{trace_id}}/assessments/{{assessment_id}}",
             for_trace(s.delete_assessment, with_body=False)),
        ]
    for prefix in V2:
        routes += [
            ("POST", f"{prefix}/traces", body_only(s.start_trace_v2)),
            ("PATCH", f"{prefix}/traces/{{trace_id}}", for_trace(s.end_trace_v2)),
            ("POST", f"{prefix}/traces/delete-traces", body_only(s.delete_traces)),
            ("POST", f"{prefix}/traces/link-to-run", body_only(s.link_to_run)),
            ("POST", f"{prefix}/traces/link-prompts", body_only(s.link_prompts)),
            ("PATCH", f"{prefix}/traces/{{trace_id}}/tags", for_trace(s.set_tag)),
            ("DELETE", f"{prefix}/traces/{{trace_id}}/tags", for_trace(s.delete_tag)),
        ]
    return routes
