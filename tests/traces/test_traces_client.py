"""MLflow 3 tracing with the stock client, against both ways of running Genesis-Flow
(`standalone`, and `distributed`: nginx in front of ingest, writer and query processes)."""

from __future__ import annotations

import time
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import AssessmentSource, Feedback, SpanStatusCode
from mlflow.exceptions import MlflowException

from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def uri(tracking_stack: Stack) -> str:
    return tracking_stack.url("uri")


@pytest.fixture
def tracking(uri: str, monkeypatch: pytest.MonkeyPatch):
    """The fluent API pointed at this stack, traces exported synchronously (the test reads them
    back at once), and put back after."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    mlflow.set_tracking_uri(uri)
    yield MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(None)


def _experiment(prefix: str) -> str:
    return mlflow.set_experiment(f"{prefix}-{uuid.uuid4().hex[:8]}").experiment_id


@mlflow.trace(span_type="TOOL")
def _lookup(x: int) -> int:
    with mlflow.start_span("inner", span_type="RETRIEVER") as span:
        span.set_inputs({"y": x})
        span.set_attribute("hits", 3)
        span.set_outputs([x, x * 2])
    return x + 1


@mlflow.trace
def _fails() -> None:
    raise ValueError("bad input")


@mlflow.trace(name="agent", attributes={"team": "search"})
def _agent(x: int) -> int:
    try:
        _fails()
    except ValueError:
        pass
    return _lookup(x) * 10


def _last_trace_id() -> str:
    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id is not None
    return trace_id


def test_a_traced_function_tree_is_stored_with_every_span(tracking: MlflowClient) -> None:
    experiment_id = _experiment("tree")
    assert _agent(3) == 40
    trace = mlflow.get_trace(_last_trace_id())

    assert trace.info.experiment_id == experiment_id
    assert trace.info.state.value == "OK"
    assert trace.info.request_preview == '{"x": 3}'
    assert trace.info.response_preview == "40"
    assert trace.info.tags["mlflow.traceName"] == "agent"
    assert trace.info.tags["mlflow.trace.spansLocation"] == "TRACKING_STORE"
    spans = {s.name: s for s in trace.data.spans}
    assert set(spans) == {"agent", "_fails", "_lookup", "inner"}
    root = spans["agent"]
    assert root.parent_id is None and root.attributes["team"] == "search"
    assert root.inputs == {"x": 3} and root.outputs == 40
    assert spans["_lookup"].parent_id == root.span_id and spans["_lookup"].span_type == "TOOL"
    inner = spans["inner"]
    assert inner.parent_id == spans["_lookup"].span_id and inner.span_type == "RETRIEVER"
    assert inner.inputs == {"y": 3} and inner.outputs == [3, 6] and inner.attributes["hits"] == 3
    failed = spans["_fails"]
    assert failed.status.status_code == SpanStatusCode.ERROR
    assert failed.events[0].name == "exception"
    assert failed.events[0].attributes["exception.type"] == "ValueError"


def test_start_span_records_a_trace_of_its_own(tracking: MlflowClient) -> None:
    _experiment("span")
    with mlflow.start_span("manual") as span:
        span.set_inputs({"q": "hello"})
        with mlflow.start_span("child") as child:
            child.set_attribute("n", 1.5)
        span.set_outputs({"a": "world"})
    trace = mlflow.get_trace(span.trace_id)
    assert [s.name for s in trace.data.spans] == ["manual", "child"]
    assert trace.data.spans[1].attributes["n"] == 1.5
    assert trace.data.spans[0].outputs == {"a": "world"}


def test_search_traces_filters_orders_and_pages(tracking: MlflowClient) -> None:
    experiment_id = _experiment("search")
    ids = []
    for i in range(5):
        with mlflow.start_span(f"step-{i % 2}") as span:
            span.set_inputs({"i": i})
            if i == 4:
                span.set_status("ERROR")
        ids.append(span.trace_id)
        time.sleep(0.01)
    client = tracking
    client.set_trace_tag(ids[1], "color", "red")
    with mlflow.start_run() as run, mlflow.start_span("in-run") as span:
        pass
    run_trace = span.trace_id
    start = client.get_trace(ids[2]).info.request_time

    def search(filter_string=None, **kwargs):
        return [t.info.trace_id for t in mlflow.search_traces(
            locations=[experiment_id], filter_string=filter_string, return_type="list", **kwargs)]

    assert search() == [run_trace, *reversed(ids)]  # newest first
    assert search("status = 'ERROR'") == [ids[4]]
    assert search("trace.status = 'OK'", order_by=["timestamp_ms ASC"]) == [*ids[:4], run_trace]
    assert search("tags.color = 'red'") == [ids[1]]
    assert search("span.name = 'step-1'") == [ids[3], ids[1]]
    assert search(f"timestamp_ms >= {start}", order_by=["timestamp ASC"]) == [ids[2], ids[3], ids[4], run_trace]
    assert search(f"run_id = '{run.info.run_id}'") == [run_trace]
    assert search(run_id=run.info.run_id) == [run_trace]

    page1 = client.search_traces(locations=[experiment_id], max_results=2, order_by=["timestamp_ms ASC"])
    page2 = client.search_traces(locations=[experiment_id], max_results=2, order_by=["timestamp_ms ASC"],
                                 page_token=page1.token)
    assert [t.info.trace_id for t in [*page1, *page2]] == ids[:4]

    with pytest.raises(MlflowException, match="Invalid"):
        search("nonsense.key = 'x'")


def test_trace_tags_set_delete_and_protected(tracking: MlflowClient, uri: str) -> None:
    _experiment("tags")
    with mlflow.start_span("t") as span:
        pass
    client = tracking
    client.set_trace_tag(span.trace_id, "stage", "dev")
    assert client.get_trace(span.trace_id).info.tags["stage"] == "dev"
    client.delete_trace_tag(span.trace_id, "stage")
    assert "stage" not in client.get_trace(span.trace_id).info.tags
    # The client refuses protected tags itself; the server does too, for other clients.
    response = requests.patch(f"{uri}/api/2.0/mlflow/traces/{span.trace_id}/tags",
                              json={"key": "mlflow.trace.spansLocation", "value": "ARTIFACT_REPO"})
    assert response.status_code == 400
    assert response.json() == {"error_code": "INVALID_PARAMETER_VALUE",
                               "message": "Tag 'mlflow.trace.spansLocation' is immutable and cannot be set on a trace."}
    with pytest.raises(MlflowException, match="not found"):
        client.set_trace_tag("tr-" + "0" * 32, "k", "v")


def test_delete_traces_by_id_and_by_age(tracking: MlflowClient) -> None:
    experiment_id = _experiment("delete")
    ids = []
    for _ in range(3):
        with mlflow.start_span("d") as span:
            pass
        ids.append(span.trace_id)
    client = tracking
    assert client.delete_traces(experiment_id, trace_ids=[ids[0]]) == 1
    with pytest.raises(MlflowException, match="not found"):
        client.get_trace(ids[0])
    newest = client.get_trace(ids[2]).info.request_time
    assert client.delete_traces(experiment_id, max_timestamp_millis=newest, max_traces=1) == 1
    remaining = [t.info.trace_id for t in mlflow.search_traces(locations=[experiment_id], return_type="list")]
    assert remaining == [ids[2]]


def test_feedback_and_expectations_are_logged_updated_and_deleted(tracking: MlflowClient, uri: str) -> None:
    _experiment("assess")
    with mlflow.start_span("judge") as span:
        pass
    trace_id = span.trace_id
    feedback = mlflow.log_feedback(trace_id=trace_id, name="quality", value=0.8, rationale="fine",
                                   source=AssessmentSource(source_type="HUMAN", source_id="bob"))
    expectation = mlflow.log_expectation(trace_id=trace_id, name="expected", value={"answer": 42})
    assert feedback.assessment_id.startswith("a-")

    updated = mlflow.update_assessment(trace_id=trace_id, assessment_id=feedback.assessment_id,
                                       assessment=Feedback(name="quality", value=0.9))
    assert updated.value == 0.9 and updated.rationale == "fine"
    fetched = mlflow.get_assessment(trace_id, feedback.assessment_id)
    assert fetched.value == 0.9 and fetched.source.source_id == "bob"

    info = tracking.get_trace(trace_id).info
    assert {a.name for a in info.assessments} == {"quality", "expected"}
    assert next(a for a in info.assessments if a.name == "expected").value == {"answer": 42}

    mlflow.delete_assessment(trace_id=trace_id, assessment_id=expectation.assessment_id)
    assert [a.name for a in tracking.get_trace(trace_id).info.assessments] == ["quality"]
    with pytest.raises(MlflowException, match="not found"):
        mlflow.get_assessment(trace_id, expectation.assessment_id)
    for method in ("GET", "PATCH", "DELETE"):  # ids are field names: `.` and `$` never reach MongoDB
        response = requests.request(method, f"{uri}/api/3.0/mlflow/traces/{trace_id}/assessments/$x.y",
                                    json={"assessment": {}})
        assert response.status_code == 404 and response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
