"""MLflow 3 logged-model writes through the stock client (stored documents checked in MongoDB)."""

from __future__ import annotations

import uuid

import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelParameter, LoggedModelStatus, LoggedModelTag, Metric
from mlflow.exceptions import MlflowException

from tests.conftest import mongo_db
from tests.stack import Stack

pytestmark = pytest.mark.integration


def test_logged_model_lifecycle(write_stack: Stack) -> None:
    client = MlflowClient(tracking_uri=write_stack.url("ingest"))
    db = mongo_db(write_stack)
    exp = client.create_experiment(f"models-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(exp).info.run_id
    model = client.create_logged_model(exp, name="model", source_run_id=run_id,
                                       params={"x1": "1"}, tags={"mlflow.user": "root", "a": "b"})
    assert model.model_id.startswith("m-") and len(model.model_id) == 34
    assert model.status == LoggedModelStatus.PENDING
    assert model.artifact_location == f"mlflow-artifacts:/{exp}/models/{model.model_id}/artifacts"
    assert model.params == {"x1": "1"} and model.tags == {"mlflow.user": "root", "a": "b"}

    client.log_batch(run_id, metrics=[Metric("r2", 0.99, 1000, 0, model_id=model.model_id)])
    # The client's own tag/param helpers read the model first (query tier): use its store.
    store = client._tracking_client.store
    store.set_logged_model_tags(model.model_id, [LoggedModelTag("stage", "candidate")])
    store.delete_logged_model_tag(model.model_id, "a")
    store.log_logged_model_params(model.model_id, [LoggedModelParameter("x2", "two")])
    ready = client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    assert ready.status == LoggedModelStatus.READY
    assert ready.tags == {"mlflow.user": "root", "stage": "candidate"}
    assert ready.params == {"x1": "1", "x2": "two"}
    [metric] = ready.metrics
    assert (metric.key, metric.value, metric.run_id, metric.model_id) == ("r2", 0.99, run_id, model.model_id)

    with pytest.raises(MlflowException) as err:
        store.delete_logged_model_tag(model.model_id, "missing")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    client.delete_logged_model(model.model_id)
    assert db.logged_models.find_one({"_id": model.model_id})["lifecycle_stage"] == "deleted"
    with pytest.raises(MlflowException) as err:
        client.finalize_logged_model("m-" + "0" * 32, LoggedModelStatus.READY)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_logged_model_name_rules(write_stack: Stack) -> None:
    client = MlflowClient(tracking_uri=write_stack.url("ingest"))
    exp = client.create_experiment(f"models-{uuid.uuid4().hex[:8]}")
    with pytest.raises(MlflowException) as err:
        client.create_logged_model(exp, name="bad/name")
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
