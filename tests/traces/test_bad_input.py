"""Malformed trace requests get 4xx answers with MLflow errors (or OTLP's plain errors), never a 500,
on both ways of running Genesis-Flow."""

from __future__ import annotations

import pytest
import requests

from tests.stack import Stack

pytestmark = pytest.mark.integration

V2, V3 = "/api/2.0/mlflow", "/api/3.0/mlflow"
TRACE = "tr-" + "0" * 32

BAD_REQUESTS = [
    ("POST", f"{V3}/traces", {"trace": "x"}),
    ("POST", f"{V3}/traces", {"trace": {"trace_info": {"trace_id": 5}}}),
    ("POST", f"{V3}/traces", {"trace": {"trace_info": {"trace_id": "tr-1", "trace_location": "x"}}}),
    ("POST", f"{V3}/traces", {"trace": {"trace_info": {
        "trace_id": "tr-1", "trace_location": {"mlflow_experiment": {"experiment_id": "0"}},
        "request_time": "yesterday", "state": "OK"}}}),
    ("POST", f"{V3}/traces", {"trace": {"trace_info": {
        "trace_id": "tr-1", "trace_location": {"mlflow_experiment": {"experiment_id": "0"}},
        "request_time": 5, "execution_duration": {}, "state": "OK"}}}),
    ("POST", f"{V3}/traces", {"trace": {"trace_info": {
        "trace_id": "tr-1", "trace_location": {"mlflow_experiment": {"experiment_id": "0"}}, "state": "DONE"}}}),
    ("POST", f"{V3}/traces", {"trace": {"trace_info": {
        "trace_id": "tr-1", "trace_location": {"mlflow_experiment": {"experiment_id": "../x"}}}}}),
    ("POST", f"{V3}/traces", {"trace": {"trace_info": {
        "trace_id": "tr-1", "trace_location": {"mlflow_experiment": {"experiment_id": "0"}}, "tags": []}}}),
    ("POST", f"{V3}/traces/search", {}),
    ("POST", f"{V3}/traces/search", {"locations": "x"}),
    ("POST", f"{V3}/traces/search", {"locations": [1, None, {"mlflow_experiment": 3}], "filter": 5}),
    ("POST", f"{V3}/traces/search", {"locations": [], "max_results": -1}),
    ("POST", f"{V3}/traces/search", {"locations": [], "max_results": "lots"}),
    ("POST", f"{V3}/traces/search", {"locations": [], "order_by": ["timestamp_ms SIDEWAYS"]}),
    ("POST", f"{V3}/traces/search", {"locations": [], "order_by": [5]}),
    ("POST", f"{V3}/traces/search", {"locations": [], "page_token": "not-a-token"}),
    ("POST", f"{V3}/traces/search", {"locations": [], "filter": "tags.x = 'a' AND ("}),
    ("POST", f"{V3}/traces/search", {"locations": [], "filter": "span.name = 5"}),
    ("POST", f"{V3}/traces/search", {"locations": [], "filter": "timestamp_ms > 'x'"}),
    ("POST", f"{V3}/traces/search", {"locations": [], "filter": "feedback. = '1'"}),
    ("POST", f"{V3}/traces/search", {"locations": [], "filter": "feedback.q > 'high'"}),
    ("POST", f"{V3}/traces/search", {"locations": [], "filter": "tags.x RLIKE '['"}),
    ("GET", f"{V3}/traces/get", None),
    ("GET", f"{V3}/traces/{TRACE}", None),
    ("GET", f"{V3}/traces/{TRACE}/assessments/a-1", None),
    ("POST", f"{V3}/traces/{TRACE}/assessments", {}),
    ("POST", f"{V3}/traces/{TRACE}/assessments", {"assessment": "x"}),
    ("POST", f"{V3}/traces/{TRACE}/assessments", {"assessment": {"assessment_name": "q"}}),
    ("PATCH", f"{V3}/traces/{TRACE}/assessments/a-1", {"assessment": 5, "update_mask": 7}),
    ("DELETE", f"{V3}/traces/{TRACE}/assessments/a-1", None),
    ("GET", f"{V3}/traces/{TRACE}/assessments/$where.x", None),
    ("PATCH", f"{V3}/traces/{TRACE}/assessments/a.b", {"assessment": {}}),
    ("PATCH", f"{V2}/traces/{TRACE}/tags", {"key": 5}),
    ("DELETE", f"{V2}/traces/{TRACE}/tags", {}),
    ("POST", f"{V2}/traces/delete-traces", {"experiment_id": "0", "max_traces": "many", "max_timestamp_millis": 1}),
    ("POST", f"{V2}/traces/delete-traces", {"experiment_id": "0", "max_traces": 0, "max_timestamp_millis": 1}),
    ("POST", f"{V2}/traces/delete-traces", {"experiment_id": 0, "request_ids": "x"}),
    ("POST", f"{V2}/traces/link-to-run", {"trace_ids": "x", "run_id": "r"}),
    ("POST", f"{V2}/traces/link-to-run", {"trace_ids": ["t"] * 101, "run_id": "r"}),
    ("POST", f"{V2}/traces/link-prompts", {"trace_id": TRACE, "prompt_versions": [{"name": "p", "version": "1"}]}),
    ("POST", f"{V2}/traces", {"experiment_id": "0", "tags": "x"}),
    ("POST", f"{V2}/traces", {"experiment_id": "987654", "timestamp_ms": 1}),
    ("PATCH", f"{V2}/traces/{TRACE}", {"status": "SIDEWAYS"}),
    ("GET", f"{V2}/traces", {"experiment_ids": "0", "max_results": "x"}),
]


@pytest.fixture(scope="module")
def uri(tracking_stack: Stack) -> str:
    return tracking_stack.url("uri")


@pytest.mark.parametrize("method,path,body", BAD_REQUESTS, ids=[f"{m} {p} {i}" for i, (m, p, _) in enumerate(BAD_REQUESTS)])
def test_bad_trace_requests_are_client_errors(uri: str, method: str, path: str, body) -> None:
    if method == "GET":
        response = requests.get(uri + path, params=body)
    else:
        response = requests.request(method, uri + path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert "error_code" in response.json()


@pytest.mark.parametrize("body,headers", [
    (b"\x0a\x05\x12\x03\x12\x01\x00", {"Content-Type": "application/x-protobuf"}),  # span without ids
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', {"Content-Type": "application/json"}),
    (b'{"resourceSpans": 5}', {"Content-Type": "application/json"}),
    (b"not gzip", {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"}),
    (b"[]", {"Content-Type": "application/json; charset=utf-8"}),
])
def test_bad_otlp_bodies_are_client_errors(uri: str, body: bytes, headers: dict[str, str]) -> None:
    response = requests.post(uri + "/v1/traces", data=body, headers={**headers, "x-mlflow-experiment-id": "0"})
    assert 400 <= response.status_code < 500, response.text
