"""OTLP/HTTP trace export bodies -> span records (what `POST /v1/traces` turns into events).

Decoded with `opentelemetry-proto` as the reference server does (`mlflow/server/otel_api.py`), and
converted the way `Span.from_otel_proto` + `Span.to_dict` convert: attribute values are stored
JSON-encoded, ids base64, and the span's `mlflow.traceRequestId` is derived from the OTLP trace id
(never trusted from the client). Pure functions: no I/O.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.json_format import Parse as parse_json_proto
from google.protobuf.json_format import ParseError
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus

from common import events as ev
from common import traces as tr

CONTENT_TYPES = ("application/x-protobuf", "application/json")
EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()
_STATUS_NAMES = {ProtoStatus.STATUS_CODE_OK: "OK", ProtoStatus.STATUS_CODE_ERROR: "ERROR"}
_HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class OtlpError(Exception):
    """A body the reference answers with a plain HTTP error (400 or 422), not an MLflow error."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def decompress(body: bytes, encoding: str | None) -> bytes:
    """The body, decompressed. HTTP servers may have decompressed it already (aiohttp does for
    gzip and deflate), so a body that is not in the named format is taken as it is."""
    enc = (encoding or "").strip().lower()
    try:
        if enc in ("", "identity"):
            return body
        if enc == "gzip":
            return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
        if enc == "deflate":
            for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):  # zlib-wrapped, then raw deflate
                try:
                    return zlib.decompress(body, wbits)
                except zlib.error:
                    continue
            return body
    except (OSError, EOFError, zlib.error):
        raise OtlpError(400, f"Failed to decompress payload with {enc}") from None
    raise OtlpError(400, f"Unsupported Content-Encoding: {encoding}")


def _hex_ids_to_base64(body: bytes) -> bytes:
    """OTLP JSON writes ids in hex; protobuf's JSON mapping reads bytes as base64."""
    data = json.loads(body)
    for resource_span in data.get("resourceSpans", []) or []:
        for scope_span in resource_span.get("scopeSpans", []) or []:
            for span in scope_span.get("spans", []) or []:
                for key in _HEX_ID_FIELDS:
                    if value := span.get(key):
                        span[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
    return json.dumps(data).encode()


def parse_request(body: bytes, content_type: str | None, content_encoding: str | None) -> ExportTraceServiceRequest:
    media_type = (content_type or "").split(";")[0].strip() or None
    if media_type not in CONTENT_TYPES:
        raise OtlpError(400, f"Invalid Content-Type: {content_type}. "
                             "Expected: application/x-protobuf or application/json")
    body = decompress(body, content_encoding)
    request = ExportTraceServiceRequest()
    try:
        if media_type == "application/json":
            parse_json_proto(_hex_ids_to_base64(body), request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
    except (DecodeError, ParseError, ValueError, TypeError, AttributeError):
        raise OtlpError(400, "Invalid OpenTelemetry format") from None
    if not request.resource_spans:
        raise OtlpError(400, "Invalid OpenTelemetry format - no spans found")
    return request


def decode_any(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if not kind:
        return None
    if kind == "array_value":
        return [decode_any(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: decode_any(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


@dataclass
class TraceSpans:
    trace_id: str  # the MLflow trace id, tr-<32 hex>
    spans: list[ev.SpanRecord] = field(default_factory=list)


def span_record(span: ProtoSpan) -> tuple[str, ev.SpanRecord]:
    """(MLflow trace id, the span as an event record). Raises OtlpError(422) for a span MLflow
    cannot take (missing or malformed ids)."""
    if len(span.trace_id) != 16 or len(span.span_id) != 8 or span.parent_span_id and len(span.parent_span_id) != 8:
        raise OtlpError(422, "Cannot convert OpenTelemetry span to MLflow span")
    trace_hex = span.trace_id.hex()
    span_hex = span.span_id.hex()
    parent_hex = span.parent_span_id.hex() if span.parent_span_id else None
    trace_id = tr.TRACE_ID_PREFIX + trace_hex
    attributes = sanitize({a.key: _dump(decode_any(a.value)) for a in span.attributes})
    attributes[tr.REQUEST_ID_ATTRIBUTE] = _dump(trace_id)
    status = _STATUS_NAMES.get(span.status.code, "UNSET")
    stored = {
        "trace_id": base64.b64encode(span.trace_id).decode("ascii"),
        "span_id": base64.b64encode(span.span_id).decode("ascii"),
        "parent_span_id": base64.b64encode(span.parent_span_id).decode("ascii") if parent_hex else None,
        "name": span.name,
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano or None,
        "events": [{"name": e.name, "time_unix_nano": e.time_unix_nano,
                    "attributes": {a.key: decode_any(a.value) for a in e.attributes}} for e in span.events],
        "status": {"code": f"STATUS_CODE_{status}", "message": span.status.message},
        "attributes": attributes,
        "links": [],
    }
    span_type = _loads_str(attributes.get(tr.SPAN_TYPE_ATTRIBUTE))
    record = ev.SpanRecord(
        span_id=span_hex, name=span.name, start_ns=int(span.start_time_unix_nano),
        end_ns=int(span.end_time_unix_nano), status=status, content=_dump(stored), parent_id=parent_hex,
        span_type=span_type if isinstance(span_type, str) else None,
    )
    if parent_hex is None:
        record.inputs = _preview_text(attributes.get(tr.SPAN_INPUTS_ATTRIBUTE))
        record.outputs = _preview_text(attributes.get(tr.SPAN_OUTPUTS_ATTRIBUTE))
        record.trace_tags = [ev.Tag(k[len(tr.TRACE_TAG_ATTRIBUTE_PREFIX):], _as_text(_loads_str(v)))
                             for k, v in attributes.items() if k.startswith(tr.TRACE_TAG_ATTRIBUTE_PREFIX)]
    return trace_id, record


def _loads_str(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else _dump(value)


def _preview_text(text: str | None) -> str | None:
    """The root span's inputs/outputs as the trace preview: the stored (JSON) text, truncated."""
    return tr.truncated_preview(text) if text else None


def sanitize(attributes: dict[str, str]) -> dict[str, str]:
    """MLflow's `sanitize_attributes`: a string attribute that itself holds JSON text of a string,
    object or array (a client that sent already-serialized values over OTLP) loses one layer of
    encoding, so it reads back as the value it meant."""
    out = {}
    for key, value in attributes.items():
        try:
            once = json.loads(value)
            if isinstance(once, str) and isinstance(json.loads(once), (str, dict, list)):
                out[key] = once
                continue
        except (ValueError, TypeError):
            pass
        out[key] = value
    return out


def spans_by_trace(request: ExportTraceServiceRequest) -> list[TraceSpans]:
    """The request's spans grouped per trace, in arrival order."""
    grouped: dict[str, TraceSpans] = {}
    for resource_span in request.resource_spans:
        for scope_span in resource_span.scope_spans:
            for span in scope_span.spans:
                trace_id, record = span_record(span)
                grouped.setdefault(trace_id, TraceSpans(trace_id)).spans.append(record)
    return list(grouped.values())
