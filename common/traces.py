"""MLflow 3 tracing: the trace and span documents, their rendering as the reference server prints
them, and the rules ingest, writer and query share.

Sources: `mlflow/store/tracking/sqlalchemy_store.py` (start_trace, log_spans, get_trace),
`mlflow/entities/{trace_info,span,assessment}.py`, `mlflow/protos/service.proto`.

Documents (collections in `common/mongo.py`):

* ``traces``: ``_id`` = the trace id (``tr-<32 hex>``). ``experiment_id``, ``request_time`` (ms),
  ``execution_duration`` (ms or absent), ``state``, previews, ``client_request_id``, ``tags`` and
  ``metadata`` (encoded keys), ``assessments`` (assessment id -> the assessment as the REST API
  prints it), ``finalized`` (start_trace arrived: its fields win over what spans imply), ``runs``
  (runs the trace was linked to), ``as`` (assessment names and values, for search), and ``sp``: the
  writer's span bookkeeping (``n`` spans stored, ``names``/``types``/``statuses`` for the search
  grammar, ``seq``/``bytes`` the open bucket, ``start_ms``/``end_ms`` the span time range, ``root``
  what the root span said). Span ids are not listed here but in the buckets, so the document's
  size does not grow with the number of spans.
* ``trace_spans``: spans in buckets, ``_id`` = ``<trace id>:<seq>``, ``ids`` the span ids it holds
  (what the writer reads to drop duplicates), ``s.<span id hex>`` = the span
  as MLflow stores it (JSON of `Span.to_dict()`). A bucket is closed at `BUCKET_BYTES`, and a span
  larger than `PART_BYTES` is split into parts ``s.<span id>~<k>``: no document nears 16 MiB,
  whatever the trace holds, and no write rewrites more than a bucket.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from typing import Any

from common.errors import MlflowError
from common.keys import decode_key, encode_key

# --- keys (mlflow.tracing.constant) ---------------------------------------------------------------

TRACE_ID_PREFIX = "tr-"
SPANS_LOCATION_TAG = "mlflow.trace.spansLocation"
SPANS_LOCATION_TRACKING_STORE = "TRACKING_STORE"
ARTIFACT_LOCATION_TAG = "mlflow.artifactLocation"
TRACE_NAME_TAG = "mlflow.traceName"
INFO_FINALIZED_METADATA = "mlflow.trace.infoFinalized"
SOURCE_RUN_METADATA = "mlflow.sourceRun"
TOKEN_USAGE_METADATA = "mlflow.trace.tokenUsage"
REQUEST_ID_ATTRIBUTE = "mlflow.traceRequestId"
SPAN_TYPE_ATTRIBUTE = "mlflow.spanType"
SPAN_INPUTS_ATTRIBUTE = "mlflow.spanInputs"
SPAN_OUTPUTS_ATTRIBUTE = "mlflow.spanOutputs"
TRACE_TAG_ATTRIBUTE_PREFIX = "mlflow.traceTag."
PROTECTED_TAG_KEYS = frozenset({SPANS_LOCATION_TAG, ARTIFACT_LOCATION_TAG})

STATES = ("STATE_UNSPECIFIED", "OK", "ERROR", "IN_PROGRESS")
MAX_PREVIEW_LENGTH = 1000
MAX_RESULTS_PER_PAGE = 500
DEFAULT_RESULTS_PER_PAGE = 100

# Buckets stay small because adding spans to a stored bucket makes the server rewrite the whole
# document: a bucket closes past BUCKET_BYTES, and a batch starts a new one rather than add to a
# stored bucket already holding SEAL_BYTES. A span larger than PART_BYTES is stored in parts.
BUCKET_BYTES = 1024 * 1024
SEAL_BYTES = 256 * 1024
PART_BYTES = 1024 * 1024


_ASSESSMENT_ID_RE = re.compile(r"[\w\-]{1,256}")


def safe_assessment_id(value: Any) -> bool:
    """An assessment id is a field name in the trace document: no `.` or `$` (ours are `a-<hex>`)."""
    return isinstance(value, str) and _ASSESSMENT_ID_RE.fullmatch(value) is not None


def assessment_not_found(trace_id: str, assessment_id: str) -> MlflowError:
    return MlflowError.not_found(f"Assessment with ID '{assessment_id}' not found for trace '{trace_id}'")


def trace_not_found(trace_id: str) -> MlflowError:
    return MlflowError.not_found(f"Trace with ID '{trace_id}' not found.")


def artifact_location(experiment_artifact_location: str, trace_id: str) -> str:
    return f"{experiment_artifact_location.rstrip('/')}/traces/{trace_id}/artifacts"


def truncated_preview(value: str | None) -> str | None:
    if value is None:
        return None
    return value if len(value) <= MAX_PREVIEW_LENGTH else value[:MAX_PREVIEW_LENGTH - 3] + "..."


def state_from_root_status(status: str | None) -> str | None:
    """The trace state a root span's status implies (None: no root span yet)."""
    if status is None:
        return None
    return "ERROR" if status == "ERROR" else "OK"


# --- protobuf JSON of timestamps and durations --------------------------------------------------------


def timestamp_json(ms: int) -> str:
    """A google.protobuf.Timestamp as protobuf's JSON mapping prints it (millisecond precision)."""
    seconds, millis = divmod(int(ms), 1000)
    text = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def duration_json(ms: int) -> str:
    seconds, millis = divmod(int(ms), 1000)
    return f"{seconds}.{millis:03d}s" if millis else f"{seconds}s"


def parse_timestamp(value: Any, field: str) -> int:
    """A Timestamp in JSON (RFC 3339 text) or milliseconds -> ms."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("Z"):
                text = text[:-1] + "+00:00"
            head, sep, frac = text.partition(".")
            if sep:
                digits = frac[:len(frac) - len(frac.lstrip("0123456789"))]
                rest = frac[len(digits):]
                parsed = dt.datetime.fromisoformat(head + rest)
                return int(parsed.timestamp()) * 1000 + int((digits + "000")[:3])
            return int(dt.datetime.fromisoformat(text).timestamp() * 1000)
        except ValueError:
            pass
    raise MlflowError.invalid(f"Invalid value {value!r} for parameter '{field}' supplied.")


def parse_duration(value: Any, field: str) -> int:
    """A Duration in JSON (``"1.5s"``) -> ms."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.endswith("s"):
        try:
            return round(float(value[:-1]) * 1000)
        except ValueError:
            pass
    raise MlflowError.invalid(f"Invalid value {value!r} for parameter '{field}' supplied.")


# --- spans: MLflow's stored form -> OTLP JSON ------------------------------------------------------


def any_value(value: Any) -> dict[str, Any]:
    """An OTel AnyValue as MLflow's `message_to_json` prints it (int64 as numbers)."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"bool_value": value}
    if isinstance(value, str):
        return {"string_value": value}
    if isinstance(value, int):
        return {"int_value": value}
    if isinstance(value, float):
        return {"double_value": value}
    if isinstance(value, (list, tuple)):
        return {"array_value": {"values": [any_value(v) for v in value]} if value else {}}
    if isinstance(value, dict):
        return {"kvlist_value": {"values": [{"key": str(k), "value": any_value(v)} for k, v in value.items()]}
                if value else {}}
    return {"string_value": str(value)}


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def span_json(span: dict[str, Any]) -> dict[str, Any]:
    """A stored span (MLflow's `Span.to_dict()`) as the v3 API prints it: an OTel proto Span."""
    out: dict[str, Any] = {"trace_id": span.get("trace_id"), "span_id": span.get("span_id")}
    if span.get("parent_span_id"):
        out["parent_span_id"] = span["parent_span_id"]
    out["name"] = span.get("name", "")
    out["start_time_unix_nano"] = span.get("start_time_unix_nano") or 0
    if span.get("end_time_unix_nano"):
        out["end_time_unix_nano"] = span["end_time_unix_nano"]
    attributes = span.get("attributes") or {}
    if attributes:
        out["attributes"] = [{"key": k, "value": any_value(_loads(v))} for k, v in attributes.items()]
    events = span.get("events") or []
    if events:
        out["events"] = [_event_json(e) for e in events]
    status = span.get("status") or {}
    status_out: dict[str, Any] = {}
    if status.get("message"):
        status_out["message"] = status["message"]
    code = status.get("code") or "STATUS_CODE_UNSET"
    if code != "STATUS_CODE_UNSET":
        status_out["code"] = code
    out["status"] = status_out
    return out


def _event_json(event: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if event.get("time_unix_nano"):
        out["time_unix_nano"] = event["time_unix_nano"]
    out["name"] = event.get("name", "")
    if event.get("attributes"):
        out["attributes"] = [{"key": k, "value": any_value(v)} for k, v in event["attributes"].items()]
    return out


def b64_id(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode("ascii")


# --- trace info -----------------------------------------------------------------------------------


def _decoded(mapping: dict[str, str] | None) -> dict[str, str]:
    return {decode_key(k): v for k, v in (mapping or {}).items()}


def trace_info(doc: dict[str, Any]) -> dict[str, Any]:
    """A TraceInfo (v3) as the reference server prints it."""
    out: dict[str, Any] = {
        "trace_id": doc["_id"],
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": doc["experiment_id"]}},
    }
    if doc.get("client_request_id"):
        out["client_request_id"] = doc["client_request_id"]
    out["request_time"] = timestamp_json(doc.get("request_time") or 0)
    if doc.get("execution_duration") is not None:
        out["execution_duration"] = duration_json(doc["execution_duration"])
    out["state"] = doc.get("state") or "STATE_UNSPECIFIED"
    if doc.get("metadata"):
        out["trace_metadata"] = _decoded(doc["metadata"])
    assessments = list((doc.get("assessments") or {}).values())
    if assessments:
        out["assessments"] = assessments
    if doc.get("tags"):
        out["tags"] = _decoded(doc["tags"])
    if doc.get("request_preview") is not None:
        out["request_preview"] = doc["request_preview"]
    if doc.get("response_preview") is not None:
        out["response_preview"] = doc["response_preview"]
    return out


_V2_STATUS = {"STATE_UNSPECIFIED": "TRACE_STATUS_UNSPECIFIED"}


def trace_info_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """A TraceInfo of the v2 API (MLflow 2.x clients) as the reference server prints it."""
    out: dict[str, Any] = {
        "request_id": doc["_id"], "experiment_id": doc["experiment_id"],
        "timestamp_ms": int(doc.get("request_time") or 0), "execution_time_ms": int(doc.get("execution_duration") or 0),
        "status": _V2_STATUS.get(doc.get("state") or "STATE_UNSPECIFIED", doc.get("state")),
    }
    metadata = _decoded(doc.get("metadata"))
    if metadata:
        out["request_metadata"] = [{"key": k, "value": v} for k, v in metadata.items()]
    tags = _decoded(doc.get("tags"))
    if TRACE_NAME_TAG in tags:  # the reference keeps the name in a column of its own, listed last
        tags[TRACE_NAME_TAG] = tags.pop(TRACE_NAME_TAG)
    if tags:
        out["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    return out


def span_entries(buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans stored in `buckets`, each once (a replayed write may have stored one twice),
    parts joined, in start-time order."""
    whole: dict[str, str] = {}
    parts: dict[str, dict[int, str]] = {}
    for bucket in sorted(buckets, key=lambda b: b.get("seq", 0)):
        for key, content in (bucket.get("s") or {}).items():
            span_id, sep, part = key.partition("~")
            if sep:
                parts.setdefault(span_id, {}).setdefault(int(part), content)
            else:
                whole.setdefault(span_id, content)
    for span_id, pieces in parts.items():
        if span_id not in whole:
            whole[span_id] = "".join(pieces[k] for k in sorted(pieces))
    spans = []
    for content in whole.values():
        try:
            spans.append(json.loads(content))
        except ValueError:
            continue
    spans.sort(key=lambda s: (0 if s.get("parent_span_id") is None else 1, s.get("start_time_unix_nano") or 0))
    return spans


def _assessment_value(assessment: dict[str, Any]) -> tuple[str, Any] | None:
    """(type, JSON text of the value) as the SQL store keeps it, or None for a malformed one."""
    if isinstance(assessment.get("feedback"), dict):
        return "feedback", json.dumps(assessment["feedback"].get("value"))
    expectation = assessment.get("expectation")
    if isinstance(expectation, dict):
        serialized = expectation.get("serialized_value")
        if isinstance(serialized, dict):
            return "expectation", serialized.get("value")
        return "expectation", json.dumps(expectation.get("value"))
    return None


def assessment_index(assessments: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """What search filters on (`feedback.<name>`, `expectation.<name>`): type ``t``, name ``n``,
    JSON text ``v``, numeric value ``x`` (None unless a number or bool), ``ok`` (valid)."""
    out = []
    for assessment in assessments.values():
        found = _assessment_value(assessment)
        if found is None:
            continue
        kind, text = found
        try:
            value = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            value = None
        numeric = float(value) if isinstance(value, (int, float)) else None
        out.append({"t": kind, "n": assessment.get("assessment_name"), "v": text, "x": numeric,
                    "ok": assessment.get("valid", True) is not False})
    return out


SIZE_STATS_METADATA = "mlflow.trace.sizeStats"


def expected_span_count(doc: dict[str, Any]) -> int | None:
    """How many spans the client said the trace has (start_trace's size stats), if it said."""
    text = (doc.get("metadata") or {}).get(encode_key(SIZE_STATS_METADATA))
    try:
        return int(json.loads(text).get("num_spans", 0)) if text else None
    except (ValueError, TypeError, AttributeError):
        return None


def split_content(content: str) -> list[str]:
    """A span's stored text in pieces of at most `PART_BYTES` UTF-8 bytes (one piece if small)."""
    data = content.encode()
    if len(data) <= PART_BYTES:
        return [content]
    pieces, start = [], 0
    while start < len(data):
        end = min(start + PART_BYTES, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # never cut a UTF-8 sequence
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    return pieces
