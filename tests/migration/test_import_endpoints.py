"""The admin import endpoints: caller-given ids, times and states; idempotent; MLflow errors."""

from __future__ import annotations

import uuid

import pytest
import requests
from mlflow import MlflowClient

from tests.stack import Stack

pytestmark = pytest.mark.integration

IMPORT = "/api/2.0/genesis-flow/import"


def post(stack: Stack, path: str, body: object) -> requests.Response:
    return requests.post(stack.url("uri") + IMPORT + path, json=body, timeout=30)


def test_run_keeps_its_id_times_status_and_lifecycle_and_a_repeat_changes_nothing(shared_target: Stack) -> None:
    exp_id = str(900_000 + uuid.uuid4().int % 1000)
    name = f"imported-{uuid.uuid4().hex[:8]}"
    exp = {"experiment_id": exp_id, "name": name, "creation_time": 1_600_000_000_000,
           "tags": [{"key": "owner", "value": "x"}]}
    assert post(shared_target, "/experiment", exp).json()["created"] is True
    assert post(shared_target, "/experiment", exp).json()["created"] is False
    run_id = uuid.uuid4().hex
    run = {"run_id": run_id, "experiment_id": exp_id, "user_id": "alice", "run_name": "old run",
           "start_time": 1_600_000_000_000, "end_time": 1_600_000_500_000, "status": "KILLED",
           "params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "team", "value": "a"}]}
    for _ in range(2):
        answer = post(shared_target, "/run", run)
        assert answer.status_code == 200, answer.text
    assert answer.json()["artifact_uri"] == f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts"
    client = MlflowClient(tracking_uri=shared_target.url("uri"))
    got = client.get_run(run_id)
    assert (got.info.status, got.info.start_time, got.info.end_time, got.info.user_id) == (
        "KILLED", 1_600_000_000_000, 1_600_000_500_000, "alice")
    assert got.data.params == {"lr": "0.1"} and got.data.tags["mlflow.runName"] == "old run"
    assert len(client.search_runs([exp_id])) == 1
    assert client.get_experiment(exp_id).creation_time == 1_600_000_000_000
    # lifecycle both ways
    assert post(shared_target, "/run", {**run, "lifecycle_stage": "deleted"}).json()["lifecycle_stage"] == "deleted"
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert post(shared_target, "/run", run).json()["lifecycle_stage"] == "active"
    state = post(shared_target, "/run-state", {"run_id": run_id}).json()
    assert state["exists"] and state["params"] == {"lr": "0.1"} and state["metric_points"] == {}
    # experiments created later do not take an imported id
    assert int(client.create_experiment(f"after-{name}")) > int(exp_id)


@pytest.mark.parametrize(("path", "body", "status", "code", "words"), [
    ("/run", {"experiment_id": "0"}, 400, "INVALID_PARAMETER_VALUE", "run_id"),
    ("/run", {"run_id": "../x", "experiment_id": "0"}, 400, "INVALID_PARAMETER_VALUE", "run_id"),
    ("/run", {"run_id": "a" * 32, "experiment_id": "0", "status": "DONE"}, 400, "INVALID_PARAMETER_VALUE", "status"),
    ("/run", {"run_id": "a" * 32, "experiment_id": "0", "lifecycle_stage": "gone"}, 400,
     "INVALID_PARAMETER_VALUE", "lifecycle_stage"),
    ("/run", {"run_id": "b" * 32, "experiment_id": "987654321"}, 404, "RESOURCE_DOES_NOT_EXIST", "987654321"),
    ("/run", {"run_id": "a" * 32, "experiment_id": "0", "params": [{"key": "k", "value": "v" * 6001}]}, 400,
     "INVALID_PARAMETER_VALUE", "6000"),
    ("/run", {"run_id": "a" * 32, "experiment_id": "0", "start_time": "soon"}, 400, "INVALID_PARAMETER_VALUE",
     "start_time"),
    ("/experiment", {"experiment_id": "0", "name": "not-the-default"}, 400, "RESOURCE_ALREADY_EXISTS", "Default"),
    ("/experiment", {"experiment_id": "77777", "name": "Default"}, 400, "RESOURCE_ALREADY_EXISTS", "Default"),
    ("/experiment", {"experiment_id": "x y", "name": "n"}, 400, "INVALID_PARAMETER_VALUE", "experiment ID"),
    ("/logged-model", {"model_id": "m-1", "experiment_id": "0", "name": "m"}, 400, "INVALID_PARAMETER_VALUE",
     "model_id"),
    ("/run-state", {}, 400, "INVALID_PARAMETER_VALUE", "run_id"),
    ("/registered-model", {"name": "a/b"}, 400, "INVALID_PARAMETER_VALUE", "cannot contain"),
    ("/registered-model", {"name": "m", "creation_timestamp": []}, 400, "INVALID_PARAMETER_VALUE",
     "creation_timestamp"),
])
def test_bad_imports_get_mlflow_errors(shared_target: Stack, path: str, body: dict, status: int, code: str,
                                       words: str) -> None:
    resp = post(shared_target, path, body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error_code"] == code and words in resp.json()["message"]


def test_logged_model_keeps_its_id_and_status(shared_target: Stack) -> None:
    model_id = f"m-{uuid.uuid4().hex}"
    body = {"model_id": model_id, "experiment_id": "0", "name": "tiny", "creation_timestamp_ms": 1_600_000_000_000,
            "status": "LOGGED_MODEL_READY", "params": [{"key": "alpha", "value": "1"}],
            "tags": [{"key": "k", "value": "v"}]}
    assert post(shared_target, "/logged-model", body).json()["created"] is True
    assert post(shared_target, "/logged-model", body).json()["created"] is False
    got = MlflowClient(tracking_uri=shared_target.url("uri")).get_logged_model(model_id)
    assert (str(got.status), got.params, got.tags["k"], got.creation_timestamp) == (
        "READY", {"alpha": "1"}, "v", 1_600_000_000_000)
