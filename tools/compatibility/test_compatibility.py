"""Check that the stock MLflow client works against a tracking server (the production
checklist's "API Functionality" step):

    python tools/compatibility/test_compatibility.py --tracking-uri https://your-domain.com

Drives the client's public API: experiments, runs, params, tags, metrics and their history,
batch logging, search with filters and paging, dataset inputs, MLflow 3 logged models, and
artifacts; with scikit-learn installed also `mlflow.sklearn.log_model` and loading it back.
Prints one line per check; exit status 0 when all passed. It works in one experiment of its
own, deleted at the end.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.checks import Report  # noqa: E402


def run_checks(uri: str) -> Report:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, LoggedModelStatus, Metric, Param, RunTag

    client = MlflowClient(tracking_uri=uri)
    report = Report(uri)
    name = f"compat-{uuid.uuid4().hex[:8]}"
    exp = report.check("create_experiment with tags", lambda: client.create_experiment(name, tags={"k": "v"}))
    if exp is None:
        return report

    def experiments() -> None:
        assert client.get_experiment(exp).tags["k"] == "v"
        assert client.get_experiment_by_name(name).experiment_id == exp
        assert client.get_experiment_by_name(name + "-missing") is None
        client.set_experiment_tag(exp, "k2", "v2")
        assert any(e.experiment_id == exp for e in client.search_experiments(filter_string=f"name = '{name}'"))

    report.check("experiments: get, get_by_name, tags, search", experiments)
    run_id = report.check("create_run", lambda: client.create_run(exp, tags={"owner": "compat"}).info.run_id)
    if run_id is not None:
        def logging() -> None:
            client.log_param(run_id, "lr", "0.1")
            client.set_tag(run_id, "t", "1")
            client.log_metric(run_id, "nan", float("nan"))
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric("loss", 1 / (i + 1), now + i, i) for i in range(3000)],
                             params=[Param("bs", "32")], tags=[RunTag("t", "2")])
            data = client.get_run(run_id).data
            assert data.params == {"lr": "0.1", "bs": "32"} and data.tags["t"] == "2"
            assert math.isnan(data.metrics["nan"]) and data.metrics["loss"] == 1 / 3000

        report.check("params, tags, metrics, log_batch", logging)
        report.check("metric history (3000 points)",
                     lambda: len(client.get_metric_history(run_id, "loss")) == 3000 or 1 / 0)

        def inputs() -> None:
            ds = Dataset(name="train", digest="d1", source_type="local", source="/data")
            client.log_inputs(run_id, [DatasetInput(ds)])
            assert client.get_run(run_id).inputs.dataset_inputs[0].dataset.digest == "d1"

        report.check("log_inputs (datasets)", inputs)

        def search() -> None:
            found = client.search_runs([exp], "metrics.loss < 0.5 and params.lr = '0.1'", order_by=["metrics.loss DESC"])
            assert [r.info.run_id for r in found] == [run_id]
            assert client.search_runs([exp], "params.lr = 'nope'") == []

        report.check("search_runs with filters and order_by", search)

        def logged_models() -> None:
            model = client.create_logged_model(exp, name="compat-model", source_run_id=run_id, params={"a": "1"})
            client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
            got = client.get_logged_model(model.model_id)
            assert got.status == LoggedModelStatus.READY and got.params == {"a": "1"}
            assert [m.model_id for m in client.search_logged_models(experiment_ids=[exp])] == [model.model_id]

        report.check("logged models: create, finalize, get, search", logged_models)

        def artifacts() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "a.txt").write_text("a")
                client.log_artifact(run_id, str(Path(tmp) / "a.txt"), "dir")
                assert [f.path for f in client.list_artifacts(run_id, "dir")] == ["dir/a.txt"]
                out = client.download_artifacts(run_id, "dir/a.txt", tmp + "/dl")
                assert Path(out).read_text() == "a"

        report.check("artifacts: log, list, download", artifacts)

        def sklearn_model() -> str:
            try:
                import numpy as np
                from sklearn.linear_model import LinearRegression
            except ImportError:
                return "skipped: scikit-learn is not installed"
            mlflow.set_tracking_uri(uri)
            try:
                with mlflow.start_run(experiment_id=exp):
                    model = LinearRegression().fit(np.array([[1], [2], [3]]), np.array([2, 4, 6]))
                    info = mlflow.sklearn.log_model(model, name="model")
                assert abs(mlflow.pyfunc.load_model(info.model_uri).predict(np.array([[4]]))[0] - 8) < 1e-6
            finally:
                mlflow.set_tracking_uri(None)
            return "logged and loaded back"

        report.check("mlflow.sklearn.log_model and pyfunc.load_model", sklearn_model)
        report.check("update_run / set_terminated", lambda: client.set_terminated(run_id) or
                     client.get_run(run_id).info.status == "FINISHED" or 1 / 0)
    report.check("delete and restore the experiment", lambda: (client.delete_experiment(exp),
                                                               client.restore_experiment(exp),
                                                               client.delete_experiment(exp)) and None)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--output")
    args = parser.parse_args()
    report = run_checks(args.tracking_uri)
    report.print_table()
    report.write(args.output)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
