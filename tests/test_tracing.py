"""One request is one trace: HTTP (ingest) -> publish -> writer commit -> MongoDB writes."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from mlflow import MlflowClient

from tests.stack import Stack

pytestmark = pytest.mark.integration


def _spans(stack: Stack, tier: str) -> list[dict]:
    spans = []
    for line in (stack.workdir / f"{tier}.log").read_text(errors="replace").splitlines():
        if line.startswith('{"name"'):
            spans.append(json.loads(line))
    return spans


def test_a_logged_metric_is_one_trace_from_http_to_mongodb(fresh_stack: Stack) -> None:
    fresh_stack.env["OTEL_TRACES_EXPORTER"] = "console"
    fresh_stack.start("writer")
    fresh_stack.start("ingest")
    client = MlflowClient(tracking_uri=fresh_stack.url("ingest"))
    run_id = client.create_run(client.create_experiment(f"trace-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_metric(run_id, "traced", 1.0)
    time.sleep(0.5)  # spans are written as they end

    http = [s for s in _spans(fresh_stack, "ingest")
            if s["kind"] == "SpanKind.SERVER" and s["attributes"].get("http.route", s["name"]).endswith("log-metric")
            or s["name"].endswith("/runs/log-metric")]
    assert http, "no server span for log-metric"
    trace_id = http[-1]["context"]["trace_id"]
    ingest_trace = [s for s in _spans(fresh_stack, "ingest") if s["context"]["trace_id"] == trace_id]
    assert any(s["name"] == "ingest.publish" for s in ingest_trace)

    writer_trace = [s for s in _spans(fresh_stack, "writer") if s["context"]["trace_id"] == trace_id]
    names = {s["name"] for s in writer_trace}
    assert "writer.commit" in names and "writer.batch" in names
    batch = next(s for s in writer_trace if s["name"] == "writer.batch")
    mongo = [s for s in writer_trace if s["parent_id"] == batch["context"]["span_id"] and s["kind"] == "SpanKind.CLIENT"]
    assert mongo, f"no MongoDB spans under the batch span: {names}"
    assert any("update" in s["name"] or "bulk" in s["name"].lower() for s in mongo), [s["name"] for s in mongo]
