"""`POST /v1/traces` from plain OpenTelemetry: the official OTLP/HTTP exporter, OTLP JSON, gzip,
and the errors the reference answers with. Both ways of running Genesis-Flow."""

from __future__ import annotations

import gzip
import json
import random
import threading
import uuid

import bson
import pytest
import requests
from mlflow import MlflowClient
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status, StatusCode

from tests.conftest import mongo_db
from tests.stack import Stack

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans):
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _record(build) -> list[ReadableSpan]:
    """Spans made by `build(tracer)` with a real SDK, collected instead of sent."""
    collected = _Collect()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collected))
    build(provider.get_tracer("genesis-flow-tests"))
    provider.shutdown()
    return collected.spans


@pytest.fixture(scope="module")
def uri(tracking_stack: Stack) -> str:
    return tracking_stack.url("uri")


@pytest.fixture(scope="module")
def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def writer_metrics(tracking_stack: Stack):
    """The writer's span counters (standalone serves the writer's metrics on its one port)."""
    tier = "standalone" if "standalone" in tracking_stack.ports else "writer"
    url = tracking_stack.url(tier) + "/metrics"

    def read() -> dict[str, float]:
        text = requests.get(url, timeout=10).text
        return {name: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                for name in ("genesis_writer_spans_written_total", "genesis_writer_spans_dropped_total")
                if line.startswith(name + " ")}
    return read


def _experiment(client: MlflowClient) -> str:
    return client.create_experiment(f"otlp-{uuid.uuid4().hex[:8]}")


def _exporter(uri: str, experiment_id: str) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"{uri}/v1/traces", headers={"x-mlflow-experiment-id": experiment_id})


def _trace_id(span: ReadableSpan) -> str:
    return f"tr-{span.context.trace_id:032x}"


def test_spans_out_of_order_and_twice_make_one_complete_trace(uri: str, client: MlflowClient, writer_metrics) -> None:
    def build(tracer):
        with tracer.start_as_current_span("root") as root:
            root.set_attribute("mlflow.spanInputs", json.dumps({"q": "why"}))
            root.set_attribute("mlflow.spanOutputs", json.dumps("because"))
            for i in range(6):
                with tracer.start_as_current_span(f"step-{i}") as step:
                    step.set_attribute("i", i)
                    with tracer.start_as_current_span(f"leaf-{i}"):
                        pass
            root.set_status(Status(StatusCode.OK))

    spans = _record(build)
    assert len(spans) == 13
    experiment_id = _experiment(client)
    exporter = _exporter(uri, experiment_id)
    shuffled = spans[:]
    random.Random(7).shuffle(shuffled)
    root = next(s for s in spans if s.parent is None)
    shuffled.remove(root)
    before = writer_metrics()
    # children first (the trace exists before its root arrives), then everything again, root included
    for chunk in (shuffled[:5], shuffled[5:], [root], spans[::-1]):
        assert exporter.export(chunk) == SpanExportResult.SUCCESS
    exporter.shutdown()

    trace = client.get_trace(_trace_id(root))
    names = [s.name for s in trace.data.spans]
    assert len(names) == 13 and len({s.span_id for s in trace.data.spans}) == 13
    assert set(names) == {"root"} | {f"step-{i}" for i in range(6)} | {f"leaf-{i}" for i in range(6)}
    info = trace.info
    assert info.state.value == "OK"
    assert info.experiment_id == experiment_id
    assert info.request_time == root.start_time // 1_000_000
    assert info.execution_duration == root.end_time // 1_000_000 - root.start_time // 1_000_000
    assert info.request_preview == '{"q": "why"}' and info.response_preview == '"because"'
    by_name = {s.name: s for s in trace.data.spans}
    assert by_name["leaf-3"].parent_id == by_name["step-3"].span_id
    assert by_name["step-3"].attributes["i"] == 3
    # the writer counts what it stored and what it recognised as already stored
    after = writer_metrics()
    assert after["genesis_writer_spans_written_total"] - before["genesis_writer_spans_written_total"] == 13
    assert after["genesis_writer_spans_dropped_total"] - before["genesis_writer_spans_dropped_total"] == 13


def test_a_trace_larger_than_a_document_is_stored_whole(uri: str, client: MlflowClient,
                                                       tracking_stack: Stack) -> None:
    big = "x" * (3 * MIB)

    def build(tracer):
        with tracer.start_as_current_span("agent"):
            for i in range(7):
                with tracer.start_as_current_span(f"tool-{i}") as span:
                    span.set_attribute("mlflow.spanOutputs", big + str(i))

    spans = _record(build)
    experiment_id = _experiment(client)
    exporter = _exporter(uri, experiment_id)
    for span in spans:  # one export each: a request body stays well under the limit
        assert exporter.export([span]) == SpanExportResult.SUCCESS
    trace_id = _trace_id(spans[0])

    trace = client.get_trace(trace_id)
    outputs = {s.name: s.outputs for s in trace.data.spans}
    assert len(outputs) == 8
    assert {k: (len(o), o[-3:]) for k, o in outputs.items() if o} == {
        f"tool-{i}": (3 * MIB + 1, "xx" + str(i)) for i in range(7)}
    docs = list(mongo_db(tracking_stack)["trace_spans"].find({"trace_id": trace_id}))
    assert len(docs) >= 3
    assert max(len(bson.encode(d)) for d in docs) < 16 * MIB


def test_otlp_json_and_gzip_bodies_are_accepted(uri: str, client: MlflowClient) -> None:
    experiment_id = _experiment(client)
    trace_hex, span_hex = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": trace_hex, "spanId": span_hex, "name": "json-span",
        "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000",
        "attributes": [{"key": "k", "value": {"stringValue": "v"}}], "status": {"code": 2, "message": "boom"}}]}]}]}
    response = requests.post(f"{uri}/v1/traces", data=gzip.compress(json.dumps(body).encode()), headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip", "x-mlflow-experiment-id": experiment_id})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/x-protobuf")
    trace = client.get_trace(f"tr-{trace_hex}")
    assert trace.info.state.value == "ERROR"
    assert trace.info.request_time == 1_700_000_000_000 and trace.info.execution_duration == 500
    assert trace.data.spans[0].attributes["k"] == "v"


def test_bad_otlp_requests_get_the_reference_errors(uri: str, client: MlflowClient) -> None:
    experiment_id = _experiment(client)
    post = lambda data, **headers: requests.post(f"{uri}/v1/traces", data=data, headers=headers)
    missing = post(b"", **{"Content-Type": "application/x-protobuf"})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["header", "x-mlflow-experiment-id"]
    wrong_type = post(b"{}", **{"Content-Type": "text/plain", "x-mlflow-experiment-id": experiment_id})
    assert wrong_type.status_code == 400 and "Invalid Content-Type" in wrong_type.json()["detail"]
    garbage = post(b"\xff\x00garbage", **{"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id})
    assert garbage.status_code == 400 and garbage.json()["detail"].startswith("Invalid OpenTelemetry format")
    empty = post(b"", **{"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id})
    assert empty.status_code == 400
    unknown = requests.post(f"{uri}/v1/traces", data=json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": uuid.uuid4().hex, "spanId": uuid.uuid4().hex[:16], "name": "s"}]}]}]}),
        headers={"Content-Type": "application/json", "x-mlflow-experiment-id": "987654321"})
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_concurrent_exporters_sending_the_same_spans_store_each_once(uri: str, client: MlflowClient) -> None:
    def build(tracer):
        with tracer.start_as_current_span("root"):
            for i in range(19):
                with tracer.start_as_current_span(f"s-{i}"):
                    pass

    spans = _record(build)
    experiment_id = _experiment(client)
    results: list[SpanExportResult] = []

    def send(seed: int) -> None:
        mine = spans[:]
        random.Random(seed).shuffle(mine)
        exporter = _exporter(uri, experiment_id)
        results.extend(exporter.export(mine[i:i + 4]) for i in range(0, len(mine), 4))
        exporter.shutdown()

    threads = [threading.Thread(target=send, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results and all(r == SpanExportResult.SUCCESS for r in results)
    trace = client.get_trace(_trace_id(spans[0]))
    assert sorted(s.name for s in trace.data.spans) == sorted(s.name for s in spans)
    assert trace.info.state.value == "OK"


def test_the_run_header_links_completed_traces_to_the_run(uri: str, client: MlflowClient) -> None:
    def build(tracer):
        with tracer.start_as_current_span("linked-root"), tracer.start_as_current_span("linked-child"):
            pass

    spans = _record(build)
    experiment_id = _experiment(client)
    run_id = client.create_run(experiment_id).info.run_id
    exporter = OTLPSpanExporter(endpoint=f"{uri}/v1/traces", headers={
        "x-mlflow-experiment-id": experiment_id, "x-mlflow-run-id": run_id})
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    found = client.search_traces(locations=[experiment_id], filter_string=f"run_id = '{run_id}'")
    assert [t.info.trace_id for t in found] == [_trace_id(spans[0])]
