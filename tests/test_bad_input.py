"""Every bad write gets the reference server's status and error_code, and none reaches the queue."""

from __future__ import annotations

import re
import uuid

import pytest
import requests
from mlflow import MlflowClient

from tests.stack import Stack

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def run_id(write_stack: Stack) -> str:
    client = MlflowClient(tracking_uri=write_stack.url("ingest"))
    exp = client.create_experiment(f"bad-input-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp)
    client.log_param(run.info.run_id, "fixed", "1")
    return run.info.run_id


def _published(stack: Stack) -> float:
    text = requests.get(stack.url("ingest") + "/metrics", timeout=5).text
    match = re.search(r"^genesis_ingest_events_published_total ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _metric(i: int) -> dict:
    return {"key": f"m{i}", "value": 1.0, "timestamp": 1, "step": 0}


RUN = "<run>"  # replaced by the fixture's run id

CASES: list[tuple[str, str, object, int, str, str]] = [
    # (case id, path, body (dict, or raw str), status, error_code, message fragment)
    ("run_id_wrong_type", "/runs/log-metric", {"run_id": 31, "key": "m", "value": 1, "timestamp": 1},
     400, "INVALID_PARAMETER_VALUE", "Invalid value 31 for parameter 'run_id' supplied"),
    ("missing_key", "/runs/log-parameter", {"run_id": RUN, "value": "1"},
     400, "INVALID_PARAMETER_VALUE", "Missing value for required parameter 'key'"),
    ("missing_run_id", "/runs/log-metric", {"key": "m", "value": 1, "timestamp": 1},
     400, "INVALID_PARAMETER_VALUE", "Missing value for required parameter 'run_id'"),
    ("metric_value_not_a_number", "/runs/log-metric", {"run_id": RUN, "key": "m", "value": "abc", "timestamp": 1},
     400, "INVALID_PARAMETER_VALUE", "parameter 'value'"),
    ("metric_missing_timestamp", "/runs/log-metric", {"run_id": RUN, "key": "m", "value": 1},
     400, "INVALID_PARAMETER_VALUE", "Missing value for required parameter 'timestamp'"),
    ("metric_negative_timestamp", "/runs/log-metric", {"run_id": RUN, "key": "m", "value": 1, "timestamp": -5},
     400, "INVALID_PARAMETER_VALUE", "Timestamp must be a nonnegative long"),
    ("step_not_integer", "/runs/log-metric", {"run_id": RUN, "key": "m", "value": 1, "timestamp": 1, "step": "x"},
     400, "INVALID_PARAMETER_VALUE", "parameter 'step'"),
    ("malformed_json", "/runs/log-metric", "{not json",
     400, "INVALID_PARAMETER_VALUE", "Missing value for required parameter 'run_id'"),
    ("json_array_body", "/runs/log-metric", "[1, 2]",
     400, "INVALID_PARAMETER_VALUE", "Malformed request body"),
    ("batch_1001_metrics", "/runs/log-batch", {"run_id": RUN, "metrics": [_metric(i) for i in range(1001)]},
     400, "INVALID_PARAMETER_VALUE", "at most 1000 metrics"),
    ("batch_101_params", "/runs/log-batch",
     {"run_id": RUN, "params": [{"key": f"p{i}", "value": "v"} for i in range(101)]},
     400, "INVALID_PARAMETER_VALUE", "at most 100 params"),
    ("batch_101_tags", "/runs/log-batch",
     {"run_id": RUN, "tags": [{"key": f"t{i}", "value": "v"} for i in range(101)]},
     400, "INVALID_PARAMETER_VALUE", "at most 100 tags"),
    ("batch_1001_items", "/runs/log-batch",
     {"run_id": RUN, "metrics": [_metric(i) for i in range(901)],
      "params": [{"key": f"p{i}", "value": "v"} for i in range(100)]},
     400, "INVALID_PARAMETER_VALUE", "at most 1000 metrics, params, and tags"),
    ("batch_body_over_1mb", "/runs/log-batch",
     {"run_id": RUN, "tags": [{"key": "big", "value": "x" * 1_100_000}]},
     400, "INVALID_PARAMETER_VALUE", "must be at most 1000000 bytes"),
    ("batch_duplicate_param_keys", "/runs/log-batch",
     {"run_id": RUN, "params": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]},
     400, "INVALID_PARAMETER_VALUE", "Duplicate parameter keys have been submitted: ['a']"),
    ("batch_metric_missing_timestamp", "/runs/log-batch",
     {"run_id": RUN, "metrics": [{"key": "m", "value": 1}]},
     400, "INVALID_PARAMETER_VALUE", "Missing value for required parameter 'metrics[0].timestamp'"),
    ("batch_metrics_not_a_list", "/runs/log-batch", {"run_id": RUN, "metrics": "nope"},
     400, "INVALID_PARAMETER_VALUE", "parameter 'metrics'"),
    ("bad_characters_in_key", "/runs/log-metric", {"run_id": RUN, "key": "bad$key", "value": 1, "timestamp": 1},
     400, "INVALID_PARAMETER_VALUE", "Names may only contain alphanumerics"),
    ("key_resolving_to_other_path", "/runs/log-parameter", {"run_id": RUN, "key": "../../etc/passwd", "value": "1"},
     400, "INVALID_PARAMETER_VALUE", "must not resolve to other names"),
    ("key_too_long", "/runs/set-tag", {"run_id": RUN, "key": "k" * 251, "value": "1"},
     400, "INVALID_PARAMETER_VALUE", "exceeds the maximum length of 250"),
    ("param_value_too_long", "/runs/log-parameter", {"run_id": RUN, "key": "long", "value": "v" * 6001},
     400, "INVALID_PARAMETER_VALUE", "exceeds the maximum length of 6000"),
    ("tag_value_too_long", "/runs/set-tag", {"run_id": RUN, "key": "long", "value": "v" * 8001},
     400, "INVALID_PARAMETER_VALUE", "exceeds the maximum length of 8000"),
    ("param_value_change", "/runs/log-parameter", {"run_id": RUN, "key": "fixed", "value": "2"},
     400, "INVALID_PARAMETER_VALUE", "Changing param values is not allowed"),
    ("malformed_run_id", "/runs/log-metric", {"run_id": "bad/id", "key": "m", "value": 1, "timestamp": 1},
     400, "INVALID_PARAMETER_VALUE", "parameter 'run_id'"),
    ("unknown_run", "/runs/log-metric", {"run_id": "0" * 32, "key": "m", "value": 1, "timestamp": 1},
     404, "RESOURCE_DOES_NOT_EXIST", "not found"),
    ("experiment_name_missing", "/experiments/create", {"key": "../../../etc/passwd"},
     400, "INVALID_PARAMETER_VALUE", "Missing value for required parameter 'name'"),
    ("experiment_name_too_long", "/experiments/create", {"name": "n" * 501},
     400, "INVALID_PARAMETER_VALUE", "exceeds the maximum length of 500"),
    ("experiment_name_wrong_type", "/experiments/create", {"name": 5},
     400, "INVALID_PARAMETER_VALUE", "parameter 'name'"),
    ("experiment_tags_not_a_list", "/experiments/create", {"name": "x-tags", "tags": "t"},
     400, "INVALID_PARAMETER_VALUE", "parameter 'tags'"),
    ("run_in_malformed_experiment", "/runs/create", {"experiment_id": "../1"},
     400, "INVALID_PARAMETER_VALUE", "experiment"),
    ("run_in_unknown_experiment", "/runs/create", {"experiment_id": "987654321"},
     404, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=987654321"),
    ("delete_unknown_experiment", "/experiments/delete", {"experiment_id": "987654321"},
     404, "RESOURCE_DOES_NOT_EXIST", "No Experiment with id=987654321"),
    ("update_run_bad_status", "/runs/update", {"run_id": RUN, "status": "EXPLODED"},
     400, "INVALID_PARAMETER_VALUE", "parameter 'status'"),
    ("bad_ack_header", "/runs/log-metric", {"run_id": RUN, "key": "m", "value": 1, "timestamp": 1, "_ack": "sometimes"},
     400, "INVALID_PARAMETER_VALUE", "X-Genesis-Flow-Ack"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_write_is_rejected_like_the_reference_server(write_stack: Stack, run_id: str, case) -> None:
    _, path, body, status, code, fragment = case
    headers = {"Content-Type": "application/json"}
    if isinstance(body, dict):
        body = {k: (run_id if val == RUN else val) for k, val in body.items()}
        if "_ack" in body:
            headers["X-Genesis-Flow-Ack"] = body.pop("_ack")
        data = requests.models.complexjson.dumps(body)
    else:
        data = body
    before = _published(write_stack)
    resp = requests.post(write_stack.url("ingest") + API + path, data=data, headers=headers, timeout=10)
    assert resp.status_code == status, resp.text
    payload = resp.json()
    assert payload["error_code"] == code
    assert fragment in payload["message"]
    assert _published(write_stack) == before  # nothing reached the queue


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/2.0/mlflow/runs/bogus"),
    ("GET", "/api/2.0/mlflow/no/such/endpoint"),
    ("POST", "/api/2.0/mlflow/logged-models/unknown/thing"),
])
def test_unknown_route_is_a_bare_404(write_stack: Stack, method: str, path: str) -> None:
    resp = requests.request(method, write_stack.url("ingest") + path, json={}, timeout=10)
    assert resp.status_code == 404
    assert resp.content == b""
