"""The write path through the stock MLflow client: ingest -> RabbitMQ -> writer -> MongoDB.

Reads go straight to MongoDB here, so these tests pin what the writer stores (the query tier
has its own tests). The default ack mode is `committed`, so a write the client saw succeed is
already in MongoDB when the call returns.
"""

from __future__ import annotations

import math
import time
import uuid

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from tests.conftest import mongo_db
from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(write_stack: Stack) -> MlflowClient:
    return MlflowClient(tracking_uri=write_stack.url("ingest"))


@pytest.fixture(scope="module")
def db(write_stack: Stack):
    return mongo_db(write_stack)


def _points(db, run_id: str, key: str) -> list[list]:
    points: list[list] = []
    for bucket in db.metrics.find({"run_id": run_id, "key": key}).sort("seq", 1):
        assert len(bucket["p"]) == bucket["n"]
        points.extend(bucket["p"])
    return points


def _new_run(client: MlflowClient) -> str:
    exp = client.create_experiment(f"exp-{uuid.uuid4().hex[:8]}")
    return client.create_run(exp).info.run_id


def test_default_experiment_exists_from_first_start(db) -> None:
    default = db.experiments.find_one({"_id": "0"})
    assert default["name"] == "Default"
    assert default["lifecycle_stage"] == "active"


def test_experiment_lifecycle(client: MlflowClient, db) -> None:
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    exp_id = client.create_experiment(name, tags={"team": "ml", "a.b": "dotted"})
    assert exp_id.isdigit()
    doc = db.experiments.find_one({"_id": exp_id})
    assert doc["name"] == name and doc["artifact_location"] == f"mlflow-artifacts:/{exp_id}"
    assert doc["tags"] == {"team": "ml", "a%2Eb": "dotted"}

    with pytest.raises(MlflowException) as err:
        client.create_experiment(name)
    assert err.value.error_code == "RESOURCE_ALREADY_EXISTS"

    client.rename_experiment(exp_id, name + "-renamed")
    client.set_experiment_tag(exp_id, "team", "platform")
    client.delete_experiment_tag(exp_id, "a.b")
    doc = db.experiments.find_one({"_id": exp_id})
    assert doc["name"] == name + "-renamed"
    assert doc["tags"] == {"team": "platform"}

    run_id = client.create_run(exp_id).info.run_id
    client.delete_experiment(exp_id)
    assert db.experiments.find_one({"_id": exp_id})["lifecycle_stage"] == "deleted"
    assert db.runs.find_one({"_id": run_id})["lifecycle_stage"] == "deleted"
    with pytest.raises(MlflowException) as err:
        client.create_run(exp_id)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"

    client.restore_experiment(exp_id)
    assert db.experiments.find_one({"_id": exp_id})["lifecycle_stage"] == "active"
    assert db.runs.find_one({"_id": run_id})["lifecycle_stage"] == "active"


def test_experiment_ids_are_unique_short_numbers(client: MlflowClient) -> None:
    ids = [client.create_experiment(f"ids-{uuid.uuid4().hex[:8]}") for _ in range(5)]
    assert len(set(ids)) == 5
    assert all(i.isdigit() and len(i) < 12 for i in ids)


def test_run_create_returns_the_whole_run(client: MlflowClient, db) -> None:
    exp_id = client.create_experiment(f"create-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp_id, start_time=1234, tags={"mlflow.user": "alice", "k": "v"})
    info = run.info
    assert len(info.run_id) == 32
    assert info.experiment_id == exp_id and info.start_time == 1234 and info.status == "RUNNING"
    assert info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{info.run_id}/artifacts"
    assert run.data.tags["mlflow.runName"] == info.run_name and info.run_name
    doc = db.runs.find_one({"_id": info.run_id})
    assert doc["tags"]["mlflow%2ErunName"] == info.run_name
    assert doc["tags"]["k"] == "v" and doc["lifecycle_stage"] == "active"


def test_param_same_value_again_is_fine_and_change_is_rejected(client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")
    with pytest.raises(MlflowException) as err:
        client.log_param(run_id, "lr", "0.2")
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Changing param values is not allowed" in err.value.message
    with pytest.raises(MlflowException) as err:
        client.log_batch(run_id, params=[Param("lr", "0.3"), Param("other", "x")])
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert db.runs.find_one({"_id": run_id})["params"] == {"lr": "0.1"}


def test_tags_last_write_wins_and_delete(client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    client.set_tag(run_id, "stage", "a")
    client.set_tag(run_id, "stage", "b")
    client.log_batch(run_id, tags=[RunTag("stage", "c"), RunTag("x.y", "z")])
    tags = db.runs.find_one({"_id": run_id})["tags"]
    assert tags["stage"] == "c" and tags["x%2Ey"] == "z"
    client.delete_tag(run_id, "x.y")
    assert "x%2Ey" not in db.runs.find_one({"_id": run_id})["tags"]
    with pytest.raises(MlflowException) as err:
        client.delete_tag(run_id, "x.y")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_run_name_tag_renames_run(client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    client.set_tag(run_id, "mlflow.runName", "renamed-by-tag")
    assert db.runs.find_one({"_id": run_id})["run_name"] == "renamed-by-tag"


def test_update_run_status_end_time_and_name(client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    store = client._tracking_client.store
    info = store.update_run_info(run_id, run_status=3, end_time=999, run_name="final")  # 3 = FINISHED
    assert info.status == "FINISHED" and info.end_time == 999 and info.run_name == "final"
    doc = db.runs.find_one({"_id": run_id})
    assert (doc["status"], doc["end_time"], doc["run_name"]) == ("FINISHED", 999, "final")
    assert doc["tags"]["mlflow%2ErunName"] == "final"


def test_metrics_nan_inf_and_latest_rule(client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    client.log_metric(run_id, "loss", 1.0, timestamp=100, step=5)
    client.log_metric(run_id, "loss", 9.0, timestamp=200, step=3)  # later time, lower step
    client.log_metric(run_id, "loss", 2.0, timestamp=100, step=5)  # same step+time, larger value
    client.log_metric(run_id, "nan", float("nan"), timestamp=1, step=0)
    client.log_metric(run_id, "inf", float("inf"), timestamp=1, step=0)
    client.log_metric(run_id, "ninf", float("-inf"), timestamp=1, step=0)
    latest = db.runs.find_one({"_id": run_id})["metrics"]
    assert (latest["loss"]["s"], latest["loss"]["t"], latest["loss"]["v"]) == (5, 100, 2.0)
    assert latest["nan"]["nan"] is True
    assert latest["inf"]["v"] == 1.7976931348623157e308
    assert latest["ninf"]["v"] == -1.7976931348623157e308
    assert _points(db, run_id, "nan") == [[0, 1, None]]
    assert sorted(p[2] for p in _points(db, run_id, "loss")) == [1.0, 2.0, 9.0]


def test_exact_duplicate_metric_points_are_dropped(client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    for _ in range(3):
        client.log_metric(run_id, "acc", 0.5, timestamp=10, step=1)
    client.log_batch(run_id, metrics=[Metric("acc", 0.5, 10, 1), Metric("acc", 0.6, 10, 1)])
    assert _points(db, run_id, "acc") == [[1, 10, 0.5], [1, 10, 0.6]]


def test_log_batch_of_30000_metrics_is_stored_completely_and_in_order(client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    base = int(time.time() * 1000)
    metrics = [Metric("train/loss", 1.0 / (i + 1), base + i, i) for i in range(30_000)]
    client.log_batch(run_id, metrics=metrics)  # the client splits it into 1000-metric requests
    points = _points(db, run_id, "train/loss")
    assert [p[0] for p in points] == list(range(30_000))
    assert points[12_345] == [12_345, base + 12_345, 1.0 / 12_346]
    buckets = db.metrics.count_documents({"run_id": run_id})
    assert buckets == 30  # bounded buckets, not one document per point
    latest = db.runs.find_one({"_id": run_id})["metrics"]["train/loss"]
    assert latest["s"] == 29_999


def test_writes_to_a_deleted_run_are_rejected(client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    client.delete_run(run_id)
    assert db.runs.find_one({"_id": run_id})["lifecycle_stage"] == "deleted"
    for call in (lambda: client.log_metric(run_id, "m", 1.0), lambda: client.log_param(run_id, "p", "1"),
                 lambda: client.set_tag(run_id, "t", "1")):
        with pytest.raises(MlflowException) as err:
            call()
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"
        assert "must be in the 'active' state" in err.value.message
    client.restore_run(run_id)
    client.log_metric(run_id, "m", 1.0)
    assert db.runs.find_one({"_id": run_id})["metrics"]["m"]["v"] == 1.0


def test_enqueued_ack_mode_answers_after_the_broker_confirm(write_stack: Stack, client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    url = write_stack.url("ingest") + "/api/2.0/mlflow/runs/log-metric"
    body = {"run_id": run_id, "key": "fast", "value": 1.5, "timestamp": 5, "step": 0}
    resp = requests.post(url, json=body, headers={"X-Genesis-Flow-Ack": "enqueued"}, timeout=10)
    assert resp.status_code == 200 and resp.json() == {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _points(db, run_id, "fast"):
        time.sleep(0.05)
    assert _points(db, run_id, "fast") == [[0, 5, 1.5]]


def test_log_inputs_and_outputs(client: MlflowClient, db) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput

    run_id = _new_run(client)
    ds = Dataset(name="train", digest="abc123", source_type="local", source="/data/train.csv")
    client.log_inputs(run_id, datasets=[DatasetInput(ds, tags=[InputTag("mlflow.data.context", "training")])])
    client.log_outputs(run_id, [LoggedModelOutput("m-0123456789abcdef0123456789abcdef", 3)])
    doc = db.runs.find_one({"_id": run_id})
    assert doc["dataset_inputs"][0]["dataset"]["digest"] == "abc123"
    assert doc["dataset_inputs"][0]["tags"] == [{"key": "mlflow.data.context", "value": "training"}]
    assert doc["model_outputs"] == [{"model_id": "m-0123456789abcdef0123456789abcdef", "step": 3}]


def test_ajax_prefix_routes_to_the_same_handlers(write_stack: Stack, client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    resp = requests.post(write_stack.url("ingest") + "/ajax-api/2.0/mlflow/runs/set-tag",
                         json={"run_id": run_id, "key": "ui", "value": "yes"}, timeout=10)
    assert resp.status_code == 200
    assert db.runs.find_one({"_id": run_id})["tags"]["ui"] == "yes"


def test_nan_is_stored_as_flag_not_value(client: MlflowClient, db) -> None:
    run_id = _new_run(client)
    client.log_batch(run_id, metrics=[Metric("m", float("nan"), 1, 1), Metric("m", 3.0, 2, 2)])
    latest = db.runs.find_one({"_id": run_id})["metrics"]["m"]
    assert latest == {"v": 3.0, "t": 2, "s": 2, "nan": False}
    assert any(p[2] is None for p in _points(db, run_id, "m"))
    assert not any(isinstance(p[2], float) and math.isnan(p[2]) for p in _points(db, run_id, "m"))
