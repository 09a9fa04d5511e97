"""Realistic MLflow sources, written with the stock client: what teams bring to a migration."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

MAX_KEY = 250
MAX_PARAM = 6000
MAX_TAG = 8000


class Tiny(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [len(str(x)) for x in model_input]


@dataclass
class Built:
    uri: str
    experiment_ids: list[str] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)  # role -> run id
    model_id: str = ""
    points: int = 0
    artifact_bytes: int = 0


@contextlib.contextmanager
def tracking(uri: str) -> Iterator[None]:
    """Point the stock client's globals at `uri`, and put them back exactly as they were: MLflow's
    setters also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI, which would otherwise leak the
    source store into every later test of the session."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_globals = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    saved_env = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved_globals
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _write(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def build(uri: str, workdir: Path, *, big_history: int = 0, big_file_mib: int = 0, registry: bool = True) -> Built:
    """Experiments (one deleted), runs in every status and lifecycle, a nested run, params and tags
    at MLflow's limits, NaN and +-Inf, several histories, inputs, nested artifacts, a logged pyfunc
    model and a registered model with versions (one deleted), a stage and an alias."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out = Built(uri)
    exp_a = client.create_experiment("team-a/training", tags={"owner": "alice", "k" * MAX_KEY: "v"})
    exp_b = client.create_experiment("team b: evaluation")
    exp_gone = client.create_experiment("abandoned")
    out.experiment_ids = ["0", exp_a, exp_b, exp_gone]

    # runs in every status
    for status in ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"):
        run = client.create_run(exp_a, run_name=f"status-{status.lower()}", tags={"status.wanted": status})
        client.log_metric(run.info.run_id, "loss", 1.0, step=0, timestamp=1_700_000_000_000)
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status=status, end_time=1_700_000_100_000)
        out.run_ids[status] = run.info.run_id
        out.points += 1

    # the rich run: limits, special values, many histories, inputs, artifacts
    parent = client.create_run(exp_a, run_name="parent", start_time=1_690_000_000_000)
    pid = parent.info.run_id
    out.run_ids["parent"] = pid
    params = [Param("p" * MAX_KEY, "x" * MAX_PARAM), Param("lr", "0.01"), Param("layers.0.units", "128")]
    params += [Param(f"param_{i:03d}", str(i)) for i in range(150)]  # more than one log-batch holds
    tags = [RunTag("t" * MAX_KEY, "y" * MAX_TAG), RunTag("team", "a")]
    for i in range(0, len(params), 100):
        client.log_batch(pid, params=params[i:i + 100], tags=tags if i == 0 else [])
    specials = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1.7976931348623157e308]
    client.log_batch(pid, metrics=[Metric("special", v, 1_700_000_000_000 + i, i) for i, v in enumerate(specials)])
    ts = 1_700_000_000_000
    for key in ("acc", "val/loss", "m" * MAX_KEY):
        metrics = [Metric(key, math.sin(i) * 10, ts + i * 10, i) for i in range(2500)]
        for i in range(0, len(metrics), 1000):
            client.log_batch(pid, metrics=metrics[i:i + 1000])
        out.points += len(metrics)
    # same step logged twice at different times, and a point equal in step and time but not value
    client.log_batch(pid, metrics=[Metric("restarts", 1.0, ts, 0), Metric("restarts", 2.0, ts + 5, 0),
                                   Metric("restarts", 3.0, ts + 5, 0)])
    out.points += len(specials) + 3
    if big_history:
        for i in range(0, big_history, 1000):
            client.log_batch(pid, metrics=[Metric("big", float(j) / 3.0, ts + j, j)
                                           for j in range(i, min(i + 1000, big_history))])
        out.points += big_history
    with tracking(uri):
        import pandas as pd

        ds = mlflow.data.from_pandas(pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]}), source="s3://bucket/train.csv",
                                     name="train")
        with mlflow.start_run(run_id=pid):
            mlflow.log_input(ds, context="training")
    art = workdir / "artifacts-src"
    out.artifact_bytes += _write(art / "README.txt", b"top level\n")
    out.artifact_bytes += _write(art / "plots" / "2024" / "loss curve.png", os.urandom(70_000))
    out.artifact_bytes += _write(art / "data" / "nested" / "deeper" / "rows.csv", b"a,b\n" * 10_000)
    out.artifact_bytes += _write(art / "empty.bin", b"")
    if big_file_mib:
        out.artifact_bytes += _write(art / "checkpoints" / "weights.bin", os.urandom(big_file_mib * 2**20))
    client.log_artifacts(pid, str(art))

    child = client.create_run(exp_a, run_name="child", tags={"mlflow.parentRunId": pid})
    client.log_param(child.info.run_id, "fold", "1")
    client.set_terminated(child.info.run_id)
    out.run_ids["child"] = child.info.run_id

    # the logged model (MLflow 3), with a metric linked to it
    with tracking(uri):
        with mlflow.start_run(experiment_id=exp_b, run_name="trainer") as run:
            info = mlflow.pyfunc.log_model(name="tiny", python_model=Tiny(), params={"alpha": "0.5"})
            mlflow.log_metric("eval_acc", 0.93, step=1, model_id=info.model_id)
        out.run_ids["trainer"] = run.info.run_id
        out.model_id = info.model_id
        out.points += 1

    # lifecycles: a deleted run, a deleted experiment with a run in it
    doomed = client.create_run(exp_b, run_name="deleted-run")
    client.log_metric(doomed.info.run_id, "x", 1.0)
    client.set_terminated(doomed.info.run_id)
    client.delete_run(doomed.info.run_id)
    out.run_ids["deleted"] = doomed.info.run_id
    gone = client.create_run(exp_gone, run_name="in-deleted-experiment")
    client.log_metric(gone.info.run_id, "y", 2.0)
    client.set_terminated(gone.info.run_id, status="FAILED")
    client.delete_experiment(exp_gone)
    out.run_ids["in_deleted_experiment"] = gone.info.run_id
    out.points += 2

    if registry:
        _registry(client, uri, out.model_id)
    return out


def _registry(client: MlflowClient, uri: str, model_id: str) -> None:
    with tracking(uri):  # the registry resolves models:/ sources through the tracking URI
        client.create_registered_model("tiny-classifier", tags={"domain": "demo"}, description="a tiny model")
        for _ in range(3):
            client.create_model_version("tiny-classifier", f"models:/{model_id}", model_id=model_id,
                                        tags={"built": "ci"})
        client.delete_model_version("tiny-classifier", "2")
        client.set_registered_model_alias("tiny-classifier", "champion", "3")
        client.transition_model_version_stage("tiny-classifier", "1", "Production")
        client.set_model_version_tag("tiny-classifier", "3", "validated", "yes")
