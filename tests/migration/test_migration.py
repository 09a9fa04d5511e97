"""Migrating an existing MLflow into Genesis-Flow: every source kind, verified point for point and
byte for byte, resumable after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pytest
import requests
from mlflow import MlflowClient

from genesis_flow.migrate import plan as pl
from genesis_flow.migrate.main import run as run_migration
from tests.migration.sources import build, tracking
from tests.sequences import reference_server
from tests.services import Services
from tests.stack import REPO, Stack, make_stack

pytestmark = pytest.mark.integration

TOOL = REPO / "tools" / "migration" / "mlflow_to_genesis_flow.py"


def migrate(source: str, target: Stack, **kw) -> tuple[dict, int]:
    opts = pl.Options(source_uri=source, target_uri=target.url("uri"), progress=False, **kw)
    return run_migration(opts)


def check_verified(report: dict, code: int) -> None:
    assert code == 0, json.dumps(report, indent=1)[:4000]
    assert report["verification"]["ok"], report["verification"]["differences"]


def test_file_store_migrates_everything_and_verifies(tmp_path: Path, target: Stack) -> None:
    src = build(f"file://{tmp_path}/mlruns", tmp_path)
    report, code = migrate(src.uri, target, verify=True)
    check_verified(report, code)
    stats = report["migration"]
    assert stats["points"] == src.points
    assert stats["bytes_sent"] > src.artifact_bytes  # the run's files, and the logged model's
    client = MlflowClient(tracking_uri=target.url("uri"), registry_uri=target.url("uri"))
    parent = client.get_run(src.run_ids["parent"])  # the same id
    assert parent.data.params["p" * 250] == "x" * 6000
    special = client.get_metric_history(src.run_ids["parent"], "special")
    assert str(special[0].value) == "nan" and special[1].value == 1.7976931348623157e308
    assert client.get_run(src.run_ids["child"]).data.tags["mlflow.parentRunId"] == src.run_ids["parent"]
    assert client.get_run(src.run_ids["SCHEDULED"]).info.status == "SCHEDULED"
    assert client.get_run(src.run_ids["deleted"]).info.lifecycle_stage == "deleted"
    assert client.get_experiment(src.experiment_ids[3]).lifecycle_stage == "deleted"
    versions = {int(v.version): v for v in client.search_model_versions("name = 'tiny-classifier'")}
    assert sorted(versions) == [1, 3] and versions[1].current_stage == "Production"
    assert client.get_registered_model("tiny-classifier").aliases == {"champion": "3"}
    with tracking(target.url("uri")):
        model = mlflow.pyfunc.load_model(f"models:/{src.model_id}")
        assert list(model.predict(["ab", "abcd"])) == [2, 4]
        assert list(mlflow.pyfunc.load_model("models:/tiny-classifier@champion").predict(["x"])) == [1]

    # a rerun copies nothing and changes nothing
    again, code = migrate(src.uri, target, verify=True)
    check_verified(again, code)
    assert again["migration"]["points_sent"] == 0 and again["migration"]["files_sent"] == 0

    # and verification notices what differs
    client.log_metric(src.run_ids["child"], "extra", 1.0)
    report, code = run_migration(pl.Options(source_uri=src.uri, target_uri=target.url("uri"), progress=False,
                                            verify=True), copy=False)
    assert code == 1
    assert any("metric keys" in d for d in report["verification"]["differences"])


def test_mlflow_server_on_sqlite_migrates_over_rest_and_from_its_database(tmp_path: Path, target: Stack) -> None:
    server_dir = tmp_path / "server"
    with reference_server(server_dir) as url:
        src = build(url, tmp_path)
        report, code = migrate(url, target, verify=True)
        check_verified(report, code)
        assert report["migration"]["points"] == src.points
        client = MlflowClient(tracking_uri=target.url("uri"))
        assert client.get_run(src.run_ids["parent"]).data.params["lr"] == "0.01"
        with tracking(target.url("uri")):
            assert list(mlflow.pyfunc.load_model(f"models:/{src.model_id}").predict(["abc"])) == [3]
    # The same store read from its database (MLflow's SqlAlchemyStore) and artifact directory:
    # same ids, so nothing is copied twice, and it verifies against the same target.
    db = f"sqlite:///{server_dir}/mlflow.db"
    report, code = migrate(db, target, verify=True, source_artifacts=str(server_dir / "mlartifacts"))
    check_verified(report, code)
    assert report["migration"]["points_sent"] == 0 and report["migration"]["files_sent"] == 0


def test_standalone_is_a_target_too(tmp_path: Path, services: Services) -> None:
    src = build(f"file://{tmp_path}/mlruns", tmp_path, registry=False)
    stack = make_stack(services, "migsa")
    try:
        stack.start("standalone")
        stack.ports["uri"] = stack.ports["standalone"]
        check_verified(*migrate(src.uri, stack, verify=True))
    finally:
        stack.stop()


def _stored_points(target: Stack, run_id: str) -> int:
    resp = requests.post(target.url("uri") + "/api/2.0/genesis-flow/import/run-state", json={"run_id": run_id},
                         timeout=10)
    return sum(resp.json().get("metric_points", {}).values()) if resp.ok else 0


@pytest.mark.slow
def test_killed_migration_resumes_to_the_same_verified_result(tmp_path: Path, target: Stack) -> None:
    """100,000 points in one history and a 50 MiB file; SIGKILL mid-copy; the rerun sends only
    the rest, stores no point twice, and verifies point for point and byte for byte."""
    src = build(f"file://{tmp_path}/mlruns", tmp_path, big_history=100_000, big_file_mib=50)
    parent = src.run_ids["parent"]
    cmd = [sys.executable, str(TOOL), "--source-uri", src.uri, "--target-uri", target.url("uri"),
           "--workers", "2", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_FILE_STORE"}  # the tool needs no opt-in
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None and _stored_points(target, parent) < 20_000:
        time.sleep(0.05)
    assert first.poll() is None, "the migration finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    interrupted = _stored_points(target, parent)
    assert 0 < interrupted < src.points

    report_file = tmp_path / "report.json"
    started = time.monotonic()
    rerun = subprocess.run([*cmd, "--verify", "--output", str(report_file)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.monotonic() - started
    report = json.loads(report_file.read_text())
    check_verified(report, rerun.returncode)
    stats = report["migration"]
    assert stats["points"] == src.points
    assert stats["points_sent"] < src.points  # only what was missing
    assert report["verification"]["checked"]["points"] == src.points  # and nothing twice
    assert report["verification"]["checked"]["artifact_bytes"] >= 50 * 2**20
    print(f"\nresumed migration: {stats['points_sent']} points, {stats['bytes_sent'] / 2**20:.1f} MiB in "
          f"{stats['seconds']} s ({stats['points_per_s']} points/s, {stats['mib_per_s']} MiB/s); "
          f"with verification {elapsed:.1f} s")
