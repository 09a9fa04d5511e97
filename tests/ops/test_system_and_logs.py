"""What operators read: JSON log lines and the `metrics/system` endpoint."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
import requests
from mlflow import MlflowClient
from opentelemetry.sdk.trace import TracerProvider

from common.logs import ACCESS_LOGGER, JsonFormatter, log_request
from query.system import summarise_writers
from tests.stack import Stack


def _record(message: str, **extra) -> logging.LogRecord:
    record = logging.LogRecord("genesis_flow.test", logging.WARNING, __file__, 1, message, (), None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_a_log_line_is_one_json_object_with_the_current_trace() -> None:
    formatter = JsonFormatter("ingest", "host-1")
    plain = json.loads(formatter.format(_record("hello %s" % "world")))
    assert plain["message"] == "hello world" and plain["tier"] == "ingest" and plain["instance"] == "host-1"
    assert plain["level"] == "WARNING" and plain["time"].endswith("Z") and "trace_id" not in plain
    with TracerProvider().get_tracer("t").start_as_current_span("request") as span:
        traced = json.loads(formatter.format(_record("inside", route="/x", status=503, duration_ms=1.5)))
    assert traced["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert (traced["route"], traced["status"], traced["duration_ms"]) == ("/x", 503, 1.5)


def test_request_lines_report_failures_at_info_and_the_rest_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        log_request("POST", "/api/2.0/mlflow/runs/log-batch", 200, 0.01)
        log_request("POST", "/api/2.0/mlflow/runs/log-batch", 503, 0.01)
    assert [(r.levelname, r.status) for r in caplog.records] == [("INFO", 503)]


def test_writer_reports_are_summarised_freshest_queue_first() -> None:
    now = 1_000_000
    reports = [
        {"_id": "w1", "time": now - 2000, "started": now - 60_000, "lag_s": 0.2, "events_per_s": 10.0,
         "points_per_s": 1000.0, "store_up": True, "queue_depth": {"0": 5, "1": 7}, "dead_letter_depth": 1},
        {"_id": "w2", "time": now - 90_000, "started": now - 100_000, "lag_s": 9.0, "events_per_s": 99.0,
         "points_per_s": 9.0, "store_up": False, "queue_depth": {"0": 50, "1": 70}, "dead_letter_depth": 0},
    ]
    summary = summarise_writers(reports, now)
    assert [w["stale"] for w in summary["writers"]] == [False, True]
    assert summary["queue"]["depth_total"] == 12 and summary["queue"]["dead_letter_depth"] == 1
    assert summary["publish_to_commit_lag_s"] == 0.2 and summary["events_per_s"] == 10.0


@pytest.mark.integration
def test_system_endpoint_shows_the_writers_queue_and_stores(write_stack: Stack) -> None:
    write_stack.start("query")
    client = MlflowClient(tracking_uri=write_stack.url("ingest"))
    run_id = client.create_run(client.create_experiment(f"sys-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_metric(run_id, "m", 1.0)
    deadline, body = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        body = requests.get(write_stack.url("query") + "/api/2.0/mlflow/metrics/system", timeout=10).json()
        if body.get("queue") and any(w["events_committed"] for w in body["writers"]):
            break
        time.sleep(1)
    assert body["versions"]["mlflow_api"] == "3.17.2"
    assert len(body["queue"]["depth_per_partition"]) == int(write_stack.env["GENESIS_FLOW_PARTITIONS"])
    assert body["queue"]["dead_letter_depth"] == 0
    assert body["writers"][0]["store_up"] is True and body["writers"][0]["events_committed"] >= 2
    assert body["artifact_store"]["reachable"] is True and body["mongodb_pool"]
