"""The seed's "Complete Workflow Test" (production checklist), with today's client signature,
against standalone and against the distributed stack behind nginx."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from sklearn.linear_model import LinearRegression

from tests.stack import Stack

pytestmark = pytest.mark.integration


def test_complete_workflow(tracking_stack: Stack, tmp_path: Path) -> None:
    mlflow.set_tracking_uri(tracking_stack.url("uri"))
    try:
        experiment_id = mlflow.create_experiment(f"production_validation_test-{uuid.uuid4().hex[:6]}")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            X = np.array([[1], [2], [3], [4]])
            y = np.array([2, 4, 6, 8])
            model = LinearRegression()
            model.fit(X, y)
            mlflow.log_param("model_type", "linear_regression")
            mlflow.log_param("features", "single_feature")
            score = model.score(X, y)
            mlflow.log_metric("r2_score", score)
            model_info = mlflow.sklearn.log_model(model, name="model")
            with tempfile.NamedTemporaryFile(mode="w", suffix=".txt", delete=False, dir=tmp_path) as f:
                f.write("Model training completed successfully")
            mlflow.log_artifact(f.name, "reports")

        client = MlflowClient()
        finished = client.get_run(run.info.run_id)
        assert finished.info.status == "FINISHED"
        assert finished.data.params == {"model_type": "linear_regression", "features": "single_feature"}
        assert finished.data.metrics["r2_score"] == pytest.approx(score)
        assert [m.value for m in client.get_metric_history(run.info.run_id, "r2_score")] == [score]

        logged = client.get_logged_model(model_info.model_id)
        assert logged.status == LoggedModelStatus.READY
        assert logged.source_run_id == run.info.run_id
        assert logged.artifact_location == f"mlflow-artifacts:/{experiment_id}/models/{model_info.model_id}/artifacts"

        loaded = mlflow.pyfunc.load_model(model_info.model_uri)
        assert loaded.predict(np.array([[5], [10]])).tolist() == pytest.approx([10.0, 20.0])

        report = Path(mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=f"reports/{Path(f.name).name}", dst_path=str(tmp_path / "dl")))
        assert report.read_text() == "Model training completed successfully"
        found = client.search_logged_models(experiment_ids=[experiment_id])
        assert [m.model_id for m in found] == [model_info.model_id]
    finally:
        mlflow.set_tracking_uri(None)
